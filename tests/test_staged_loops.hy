"Loops over lists whose length is known only at run time (hytorch.ListOf), variables that
carry tensors from one iteration to the next, and gradients through such loops
(backpropagation through time), against eager PyTorch on many lengths."

(require hytorch [defstaged])
(import copy
        hypothesis [given settings]
        hypothesis.strategies :as st
        numpy :as np
        pytest
        torch
        torch.nn :as nn
        torch.nn.functional :as F
        hytorch)

(setv BATCH 3 INPUT 5 HIDDEN 7)
(setv INPUTS (hytorch.ListOf (hytorch.TensorType [BATCH INPUT])))


(defclass RNN [nn.Module]
  "An Elman RNN over a list of [BATCH INPUT] tensors; `twice` reads the hidden state twice
  an iteration, `context` adds at each step a tensor computed from the first input before
  the loop."
  (defn __init__ [self [twice False] [context False]]
    (.__init__ (super))
    (setv self.hid-init (nn.Parameter (* 0.5 (torch.randn BATCH HIDDEN)))
          self.in-to-hid (nn.Linear INPUT HIDDEN)
          self.hid-to-hid (nn.Linear HIDDEN HIDDEN)
          self.context (when context (nn.Linear HIDDEN HIDDEN))
          self.twice twice))

  (defstaged forward [self inputs]
    (setv h self.hid-init
          c (when self.context (torch.tanh (self.context (self.in-to-hid (get inputs 0))))))
    (for [x inputs]
      (setv pre (+ (self.hid-to-hid h) (self.in-to-hid x)))
      (when self.twice (setv pre (* pre h)))
      (when self.context (setv pre (+ pre c)))
      (setv h (torch.sigmoid pre)))
    h))


(defstaged train-step [model opt inputs target]
  (.zero-grad opt)
  (setv loss (F.mse-loss (model inputs) target))
  (.backward loss)
  (.step opt)
  (.item loss))


(defn sequence [n [seed 0]]
  (setv g (torch.Generator))
  (.manual-seed g seed)
  (lfor _ (range n) (torch.randn BATCH INPUT :generator g)))


(defn test-forward-over-lists-of-any-length []
  (torch.manual-seed 0)
  (setv model (RNN)
        f (hytorch.stage model.forward INPUTS))
  (assert (in "(len in)" f.ir))
  (assert (in "(nth in " f.ir))
  (for [n [10 9 1 0 25]]
    (setv xs (sequence n n))
    (setv out (f xs))
    (if n
      (do (assert (isinstance out torch.Tensor))
          (torch.testing.assert-close out (.detach (model xs))))
      (torch.testing.assert-close (torch.as-tensor out) (.detach model.hid-init))))
  ;; one stacked tensor or NumPy array in place of the list; NumPy in, NumPy out
  (setv xs (sequence 4))
  (torch.testing.assert-close (f (torch.stack xs)) (.detach (model xs)))
  (setv out (f (.numpy (torch.stack xs))))
  (assert (isinstance out np.ndarray))
  (torch.testing.assert-close (torch.from-numpy out) (.detach (model xs))))


(defn test-an-ordinary-list-unrolls []
  (torch.manual-seed 0)
  (setv model (RNN)
        unrolled (hytorch.lms-compile (fn [x] (model [x x x])) (hytorch.TensorType [BATCH INPUT])))
  (assert (not-in "while" (str unrolled)))
  (assert (= (.count (str unrolled) "sigmoid") 3)))


(defn test-bad-lists-are-clear-errors []
  (torch.manual-seed 0)
  (setv f (hytorch.stage (. (RNN) forward) INPUTS))
  (with [e (pytest.raises ValueError :match "argument 1 \\(element 1\\) has shape \\[2, 5\\]")]
    (f [(torch.zeros BATCH INPUT) (torch.zeros 2 INPUT)]))
  (with [e (pytest.raises TypeError :match "argument 1 \\(element 0\\) holds int64")]
    (f [(torch.zeros BATCH INPUT :dtype torch.int64)]))
  (with [e (pytest.raises TypeError :match "list of tensors")]
    (f 3))
  (with [e (pytest.raises TypeError :match "ListOf takes the type")]
    (hytorch.ListOf int)))


(defstaged last-of [xs] (get xs -1))
(defstaged count-of [xs] (len xs))
(defstaged python-length [xs] (+ 1 (.__len__ xs)))


(defn test-indexing-and-length []
  (setv last (hytorch.stage last-of INPUTS)
        count (hytorch.stage count-of INPUTS)
        xs (sequence 3))
  (torch.testing.assert-close (last xs) (get xs -1))
  (assert (= (count xs) 3))
  (assert (= (count []) 0))
  (with [e (pytest.raises IndexError :match "list index out of range")]
    (last []))
  (with [e (pytest.raises hytorch.StagingError :match "known only when the compiled code runs")]
    (hytorch.lms-compile python-length INPUTS)))


(defstaged changes-shape [xs]
  (setv h (get xs 0))
  (for [x xs] (setv h (.view x -1)))
  h)


(defstaged from-parameters-alone [model xs]
  ;; (model.in-to-hid (torch.ones ...)) takes no staged value: it is staged all the same
  (+ (torch.tanh (model.in-to-hid (torch.ones BATCH INPUT))) (model.in-to-hid (get xs 0))))


(defstaged through-an-unsupported-call [model xs]
  (+ (torch.cumsum model.hid-init 0) (model.hid-to-hid (get xs 0))))


(defn test-torch-calls-on-parameters-alone-are-staged []
  (torch.manual-seed 0)
  (setv model (RNN)
        f (hytorch.stage from-parameters-alone model INPUTS)
        xs (sequence 2))
  (torch.testing.assert-close (f model xs) (.detach (from-parameters-alone model xs)))
  (with [(torch.no-grad)] (.mul- model.in-to-hid.weight 2.0))   ; not a constant: follows
  (torch.testing.assert-close (f model xs) (.detach (from-parameters-alone model xs)))
  ;; a call the op table lacks would be computed by torch now: a constant, so refused
  (with [e (pytest.raises hytorch.StagingError :match "computed from a module's parameters")]
    (hytorch.lms-compile through-an-unsupported-call model (hytorch.ListOf (hytorch.TensorType [BATCH HIDDEN])))))


(defn test-a-carried-tensor-keeps-its-shape []
  (with [e (pytest.raises hytorch.StagingError :match "keeps one shape and dtype")]
    (hytorch.lms-compile changes-shape INPUTS)))


(defn train-both [model-args optimizer lengths [lr 0.3]]
  "Train a compiled and an eager copy of one RNN, step by step on sequences of `lengths`,
  checking that their weights agree after every step; the per-step losses and the models."
  (torch.manual-seed 1)
  (setv model (RNN #** model-args)
        eager (copy.deepcopy model)
        opt (optimizer (.parameters model) :lr lr)
        eager-opt (optimizer (.parameters eager) :lr lr)
        step (hytorch.stage train-step model opt INPUTS (hytorch.TensorType [BATCH HIDDEN]))
        losses [])
  (for [[i n] (enumerate lengths)]
    (setv xs (sequence n i)
          target (torch.rand BATCH HIDDEN))
    (.append losses #((step model opt xs target) (train-step eager eager-opt xs target)))
    (assert-same-weights model eager))
  #(losses model eager))


(defn assert-same-weights [model eager [tol 1e-5]]
  (for [[p q] (zip (.parameters model) (.parameters eager))]
    (torch.testing.assert-close (.detach p) (.detach q) :atol tol :rtol tol)))


(defn assert-trained-alike [losses model eager [tol 1e-5]]
  (for [[compiled expected] losses]
    (assert (< (abs (- compiled expected)) tol)))
  (assert-same-weights model eager tol))


(defn [(settings :max-examples 12 :deadline None :derandomize True)
       (given :lengths (st.lists (st.integers 0 20) :min-size 1 :max-size 6))]
  test-training-through-loops-of-run-time-length [lengths]
  (setv [losses model eager] (train-both {} torch.optim.SGD lengths))
  (assert-trained-alike losses model eager))


(defn [(pytest.mark.parametrize "variant" ["twice" "context"])]
  test-gradients-through-two-reads-and-outer-tensors [variant]
  (setv [losses model eager] (train-both {variant True} torch.optim.SGD [4 1 2 7]))
  (assert-trained-alike losses model eager))


(defn test-training-with-adam-and-momentum []
  (setv [losses model eager] (train-both {} torch.optim.Adam [5 3 8] :lr 0.01))
  (assert-trained-alike losses model eager)
  (setv [losses model eager]
        (train-both {} (fn [params * lr] (torch.optim.SGD params :lr lr :momentum 0.9))
                    [5 3 8]))
  (assert-trained-alike losses model eager))


(defstaged summed-loss-step [model opt inputs target]
  "The loss summed over the steps, in a variable carried through the loop."
  (.zero-grad opt)
  (setv h model.hid-init
        total (torch.zeros []))
  (for [x inputs]
    (setv h (torch.sigmoid (+ (model.hid-to-hid h) (model.in-to-hid x)))
          total (+ total (F.mse-loss h target))))
  (.backward total)
  (.step opt)
  (.item total))


(defn test-a-loss-summed-in-the-loop []
  (torch.manual-seed 2)
  (setv model (RNN) eager (copy.deepcopy model)
        opt (torch.optim.SGD (.parameters model) :lr 0.1)
        eager-opt (torch.optim.SGD (.parameters eager) :lr 0.1)
        step (hytorch.stage summed-loss-step model opt INPUTS (hytorch.TensorType [BATCH HIDDEN]))
        losses [])
  (for [n [3 6 1]]
    (setv xs (sequence n n) target (torch.rand BATCH HIDDEN))
    (.append losses #((step model opt xs target) (summed-loss-step eager eager-opt xs target))))
  (assert-trained-alike losses model eager))


(defstaged set-in-an-if [model opt inputs target flag]
  (.zero-grad opt)
  (setv h model.hid-init)
  (when (> flag 0)
    (setv h (torch.sigmoid (model.hid-to-hid h))))
  (setv loss (F.mse-loss h target))
  (.backward loss)
  (.step opt)
  (.item loss))


(defn test-gradients-through-a-staged-if-are-refused-clearly []
  (setv model (RNN) opt (torch.optim.SGD (.parameters model) :lr 0.1))
  (with [e (pytest.raises hytorch.HyTorchError :match "inside a staged `if`")]
    (hytorch.stage set-in-an-if model opt INPUTS (hytorch.TensorType [BATCH HIDDEN]) int)))


(defstaged printing-step [model opt inputs target]
  (.zero-grad opt)
  (setv h model.hid-init)
  (for [x inputs]
    (print "step")
    (setv h (torch.sigmoid (+ (model.hid-to-hid h) (model.in-to-hid x)))))
  (setv loss (F.mse-loss h target))
  (.backward loss)
  (.step opt)
  (.item loss))


(defn test-the-backward-pass-does-not-print-again [capfd]
  ;; it runs the loop's body again, for its gradients: not its prints
  (setv model (RNN) opt (torch.optim.SGD (.parameters model) :lr 0.1)
        step (hytorch.stage printing-step model opt INPUTS (hytorch.TensorType [BATCH HIDDEN])))
  (.readouterr capfd)
  (step model opt (sequence 4) (torch.rand BATCH HIDDEN))
  (assert (= (. (.readouterr capfd) out) (* "step\n" 4))))


(defstaged backward-in-the-loop [model opt inputs target]
  (setv h model.hid-init)
  (for [x inputs]
    (.zero-grad opt)
    (setv h (torch.sigmoid (+ (model.hid-to-hid h) (model.in-to-hid x))))
    (.backward (F.mse-loss h target))
    (.step opt))
  0)


(defn test-a-backward-through-earlier-iterations-is-refused []
  (setv model (RNN) opt (torch.optim.SGD (.parameters model) :lr 0.1))
  (with [e (pytest.raises hytorch.HyTorchError :match "call backward after the loop")]
    (hytorch.stage backward-in-the-loop model opt INPUTS (hytorch.TensorType [BATCH HIDDEN]))))


(defstaged nested-loops-step [model opt inputs target]
  (.zero-grad opt)
  (setv h model.hid-init)
  (for [x inputs]
    (for [y inputs]
      (setv h (torch.sigmoid (+ (model.hid-to-hid h) (model.in-to-hid y))))))
  (setv loss (F.mse-loss h target))
  (.backward loss)
  (.step opt)
  (.item loss))


(defn test-gradients-through-nested-loops-are-refused-clearly []
  (setv model (RNN) opt (torch.optim.SGD (.parameters model) :lr 0.1))
  (with [e (pytest.raises hytorch.HyTorchError :match "inside another staged loop")]
    (hytorch.stage nested-loops-step model opt INPUTS (hytorch.TensorType [BATCH HIDDEN]))))


(defstaged forward-only-with-prints [model inputs]
  (setv h model.hid-init)
  (for [x inputs]
    (setv h (torch.sigmoid (+ (model.hid-to-hid h) (model.in-to-hid x)))))
  h)


(defn test-inference-saves-nothing-for-a-backward-pass []
  ;; a program with no backward pass keeps no tape of its loops
  (setv f (hytorch.stage forward-only-with-prints (RNN) INPUTS))
  (assert (not-in "ht_tape_push" f.c-source)))


(defstaged dropout-in-the-loop-step [model opt inputs target]
  (.zero-grad opt)
  (setv h model.hid-init)
  (for [x inputs]
    (setv h (F.dropout (torch.sigmoid (+ (model.hid-to-hid h) (model.in-to-hid x))) 0.5)))
  (setv loss (F.mse-loss h target))
  (.backward loss)
  (.step opt)
  (.item loss))


(defn test-random-masks-in-a-differentiated-loop-are-refused-clearly []
  ;; the backward pass runs the loop again: it would draw other masks
  (setv model (RNN) opt (torch.optim.SGD (.parameters model) :lr 0.1))
  (with [e (pytest.raises hytorch.HyTorchError :match "dropout draws random numbers")]
    (hytorch.stage dropout-in-the-loop-step model opt INPUTS (hytorch.TensorType [BATCH HIDDEN]))))
