"Edge cases of gradients through staged loops and of torch calls on parameters, found by a
review of the first version (each was wrong or refused then; each comment says how): a cell
reset inside the loop, a state that starts without gradients, buffers and frozen parameters,
operators on a parameter alone, cells that swap values. Each compares with eager PyTorch."

(require hytorch [defstaged])
(import copy
        functools [cache]
        hypothesis [given settings]
        hypothesis.strategies :as st
        pytest
        torch
        torch.nn :as nn
        torch.nn.functional :as F
        hytorch)

(setv BATCH 3 INPUT 5 HIDDEN 7)
(setv INPUTS (hytorch.ListOf (hytorch.TensorType [BATCH INPUT]))
      TARGET (hytorch.TensorType [BATCH HIDDEN]))


(defclass RNN [nn.Module]
  (defn __init__ [self]
    (.__init__ (super))
    (setv self.hid-init (nn.Parameter (* 0.5 (torch.randn BATCH HIDDEN)))
          self.in-to-hid (nn.Linear INPUT HIDDEN)
          self.hid-to-hid (nn.Linear HIDDEN HIDDEN))))


(defn sequence [n [seed 0]]
  (setv g (torch.Generator))
  (.manual-seed g seed)
  (lfor _ (range n) (torch.randn BATCH INPUT :generator g)))


(defn one-step-both [step-fn n [seed 0]]
  "One SGD step (lr 1, so the weights' difference is the gradients') of a compiled and an
  eager copy of one RNN on a sequence of `n`: #(compiled loss, eager loss, model, eager)."
  (torch.manual-seed seed)
  (setv model (RNN) eager (copy.deepcopy model)
        opt (torch.optim.SGD (.parameters model) :lr 1.0)
        eager-opt (torch.optim.SGD (.parameters eager) :lr 1.0)
        step (hytorch.stage step-fn model opt INPUTS TARGET)
        xs (sequence n 3)
        target (torch.rand BATCH HIDDEN))
  #((step model opt xs target) (step-fn eager eager-opt xs target) model eager))


(defn assert-same-weights [model eager [tol 1e-5]]
  (for [[[name p] q] (zip (.named-parameters model) (.parameters eager))]
    (torch.testing.assert-close (.detach p) (.detach q) :atol tol :rtol tol
                                :msg (fn [m] f"{name}: {m}"))))


;; A `set` of a tensor cell to a value that needs no gradient cuts the cell's gradient there
;; (it was not recorded, and the gradient leaked into the value the cell held before).

(defstaged reset-in-the-body [model opt inputs target]
  (.zero-grad opt)
  (setv h model.hid-init acc (torch.zeros BATCH HIDDEN))
  (for [x inputs]
    (setv acc (+ acc (model.hid-to-hid h)))
    (setv h (torch.zeros BATCH HIDDEN)))   ; h needs no gradient from here on
  (setv loss (F.mse-loss acc target))
  (.backward loss)
  (.step opt)
  (.item loss))


(defn test-a-cell-reset-to-zeros-in-the-loop-cuts-its-gradient []
  ;; eager: hid_init gets the gradient of the first iteration only; compiled adds every
  ;; iteration's (hid_init differs by ~0.19 after one step)
  (setv [compiled expected model eager] (one-step-both reset-in-the-body 3))
  (assert (< (abs (- compiled expected)) 1e-5))
  (assert-same-weights model eager))


(defstaged two-sequences-reset-between [model opt inputs target]
  (.zero-grad opt)
  (setv h model.hid-init)
  (for [x inputs]
    (setv h (torch.sigmoid (+ (model.hid-to-hid h) (model.in-to-hid x)))))
  (setv first h)
  (setv h (torch.zeros BATCH HIDDEN))     ; the second sequence starts afresh
  (for [x inputs]
    (setv h (torch.sigmoid (+ (model.hid-to-hid h) (model.in-to-hid x)))))
  (setv loss (+ (F.mse-loss first target) (F.mse-loss h target)))
  (.backward loss)
  (.step opt)
  (.item loss))


(defn [(pytest.mark.parametrize "n" [1 3])]
  test-two-loops-carrying-one-cell-reset-between [n]
  ;; eager: the second loop's gradient at its start goes nowhere (it started from zeros);
  ;; compiled adds it to `first`'s, so the first loop's weights' gradients are off (~5e-3 for
  ;; n = 1, ~1e-4 for n = 3)
  (setv [compiled expected model eager] (one-step-both two-sequences-reset-between n))
  (assert (< (abs (- compiled expected)) 1e-5))
  (assert-same-weights model eager))


;; A cell that starts without gradients and is set in a staged loop to a value that needs
;; them (an RNN's state from zeros) trains (it was refused on the first render pass, before the
;; cells' kinds had settled).

(defstaged hidden-from-zeros [model opt inputs target]
  (.zero-grad opt)
  (setv h (torch.zeros BATCH HIDDEN))
  (for [x inputs]
    (setv h (torch.sigmoid (+ (model.hid-to-hid h) (model.in-to-hid x)))))
  (setv loss (F.mse-loss h target))
  (.backward loss)
  (.step opt)
  (.item loss))


(defstaged hidden-from-an-argument [model opt inputs target]
  (.zero-grad opt)
  (setv h target)
  (for [x inputs]
    (setv h (torch.sigmoid (+ (model.hid-to-hid h) (model.in-to-hid x)))))
  (setv loss (F.mse-loss h target))
  (.backward loss)
  (.step opt)
  (.item loss))


(defstaged sum-from-zeros [model opt inputs target]
  (.zero-grad opt)
  (setv acc (torch.zeros BATCH HIDDEN))
  (for [x inputs]
    (setv acc (+ acc (model.in-to-hid x))))
  (setv loss (F.mse-loss acc target))
  (.backward loss)
  (.step opt)
  (.item loss))


(setv STARTS-WITHOUT-GRADIENTS {"hidden-from-zeros" hidden-from-zeros
                                "hidden-from-an-argument" hidden-from-an-argument
                                "sum-from-zeros" sum-from-zeros})


(defn [cache] stage-step [name]
  (torch.manual-seed 0)
  (setv model (RNN) opt (torch.optim.SGD (.parameters model) :lr 1.0))
  (hytorch.stage (get STARTS-WITHOUT-GRADIENTS name) model opt INPUTS TARGET))


(defn [(settings :max-examples 6 :deadline None :derandomize True)
       (given :name (st.sampled-from (sorted STARTS-WITHOUT-GRADIENTS))
              :n (st.integers 1 12))]
  test-a-carried-state-that-starts-without-gradients-trains [name n]
  ;; eager trains these (the standard RNN from h0 = zeros); compiled raises IRError "`x12` is
  ;; set to a tensor that needs gradients inside a staged `if` or data-loader loop"
  (setv step (stage-step name) f (get STARTS-WITHOUT-GRADIENTS name))
  (torch.manual-seed n)
  (setv model (RNN) eager (copy.deepcopy model)
        opt (torch.optim.SGD (.parameters model) :lr 1.0)
        eager-opt (torch.optim.SGD (.parameters eager) :lr 1.0)
        xs (sequence n n) target (torch.rand BATCH HIDDEN))
  (assert (< (abs (- (step model opt xs target) (f eager eager-opt xs target))) 1e-5))
  (assert-same-weights model eager))


;; Torch calls on a buffer or a frozen parameter alone are staged, so they follow changes
;; (they were computed once while staging: silently stale constants).

(defclass WithBuffer [nn.Module]
  (defn __init__ [self]
    (.__init__ (super))
    (.register-buffer self "scale" (torch.ones BATCH INPUT))
    (setv self.frozen (nn.Parameter (torch.ones BATCH INPUT) :requires-grad False))))


(defstaged tanh-of-buffer [m xs] (* (torch.tanh m.scale) (get xs 0)))
(defstaged tanh-of-frozen [m xs] (* (torch.tanh m.frozen) (get xs 0)))


(defn [(pytest.mark.parametrize "f" [tanh-of-buffer tanh-of-frozen])]
  test-torch-calls-on-buffers-and-frozen-parameters-follow-them [f]
  (setv m (WithBuffer) xs (sequence 2)
        compiled (hytorch.stage f m INPUTS))
  (with [(torch.no-grad)] (.fill- m.scale 2.0) (.fill- m.frozen 2.0))
  ;; eager: tanh(2) * x; compiled: tanh(1) * x, the value at staging
  (torch.testing.assert-close (torch.as-tensor (compiled m xs)) (f m xs)))


;; Operators on a parameter alone (`(- p)`, `(get p 0)`) are staged (they were refused).

(defstaged negated-parameter [model xs] (+ (- model.hid-init) (get xs 0 0 0)))


(defn test-a-negated-parameter-is-staged []
  (torch.manual-seed 0)
  (setv model (RNN) xs (sequence 2)
        compiled (hytorch.stage negated-parameter model INPUTS))
  (torch.testing.assert-close (torch.as-tensor (compiled model xs))
                              (.detach (negated-parameter model xs))))


;; Cells whose gradients are each other's carried buffers (values swapped, or set to an outer
;; tensor) get their own gradients (c_bptt.hy's carry-lines read buffers it had just
;; overwritten).

(defstaged swapped-cells [model opt inputs target]
  (.zero-grad opt)
  (setv h model.hid-init c (torch.tanh model.hid-init))
  (for [x inputs]
    (setv [h c] [c (torch.sigmoid (+ (model.hid-to-hid h) (model.in-to-hid x)))]))
  (setv loss (+ (F.mse-loss h target) (* 2.0 (F.mse-loss c target))))
  (.backward loss)
  (.step opt)
  (.item loss))


(defn test-cells-that-swap-values-get-their-own-gradients []
  ;; eager vs compiled after one step: weights differ by up to ~0.03 (the same program with
  ;; `(setv [c h] [... c])`, its cells met in the other order, agrees)
  (setv [compiled expected model eager] (one-step-both swapped-cells 4))
  (assert (< (abs (- compiled expected)) 1e-5))
  (assert-same-weights model eager))


(defstaged cell-reset-to-an-outer-tensor [model opt inputs target]
  (.zero-grad opt)
  (setv h0 (torch.tanh model.hid-init) r h0 acc (torch.tanh model.hid-init))
  (for [x inputs]
    (setv acc (+ acc (torch.sigmoid (+ (model.hid-to-hid r) (model.in-to-hid x)))))
    (setv r h0))
  (setv loss (+ (F.mse-loss acc target) (F.mse-loss r target)))
  (.backward loss)
  (.step opt)
  (.item loss))


(defn test-a-cell-set-to-an-outer-tensor-gives-it-the-right-gradient []
  ;; eager vs compiled after one step: hid_init differs by ~0.08
  (setv [compiled expected model eager] (one-step-both cell-reset-to-an-outer-tensor 3))
  (assert (< (abs (- compiled expected)) 1e-5))
  (assert-same-weights model eager))


;; detach(): the state's path through hid-to-hid cut from the graph at every step, its path
;; through the residual kept: gradients reach every earlier step through the residual only.

(defstaged residual-with-a-detached-recurrence [model opt inputs target]
  (.zero-grad opt)
  (setv h model.hid-init acc (torch.zeros BATCH HIDDEN))
  (for [x inputs]
    (setv h (+ (torch.tanh (+ (model.in-to-hid x) (model.hid-to-hid (.detach h)))) (* 0.5 h)))
    (setv acc (+ acc h)))
  (setv loss (F.mse-loss acc target))
  (.backward loss)
  (.step opt)
  (.item loss))


(defn test-a-detached-state-cuts-one-path-of-the-gradient []
  (for [n [1 2 5]]
    (setv [compiled expected model eager] (one-step-both residual-with-a-detached-recurrence n))
    (assert (< (abs (- compiled expected)) 1e-5))
    (assert-same-weights model eager)))
