"Random recurrent cells trained through staged loops of run-time length, against eager
PyTorch: each step's loss and the weights after it. A cell is h <- ops(h + in(x)) (+ a
second carried tensor, LSTM-like, sometimes), the ops drawn from those that keep a shape,
some reading h or the first input again; the loss is drawn too. Its gradients flow through
the loop (c_bptt.hy) and the ops' table gradients."

(require hytorch [defstaged])
(import copy
        hypothesis [given settings]
        hypothesis.strategies :as st
        pytest
        torch
        torch.nn :as nn
        torch.nn.functional :as F
        hytorch)

(setv BATCH 3 INPUT 4 HIDDEN 6)
(setv OPS ["relu" "sigmoid" "tanh" "scale" "times-h" "minus-h" "plus-bias" "linear" "softmax"
           "times-context"])
(setv LOSSES ["sum" "mean" "mse"])


(defclass RandomCell [nn.Module]
  "h <- ops(h + in(x)), in order; with `memory`, c <- c * sigmoid(u) + tanh(u) is carried
  too and h reads it."
  (defn __init__ [self ops memory loss]
    (.__init__ (super))
    (setv self.ops ops self.memory memory self.loss-name loss
          self.hid-init (nn.Parameter (* 0.3 (torch.randn BATCH HIDDEN)))
          self.in-to-hid (nn.Linear INPUT HIDDEN)
          self.bias (nn.Parameter (* 0.1 (torch.randn HIDDEN)))
          self.hid-to-hid (nn.Linear HIDDEN HIDDEN)))

  (defn step [self h c x context]
    "One step of the cell: the new (h c)."
    (setv u (+ h (self.in-to-hid x)))
    (for [op self.ops]
      (setv u (cond (= op "relu") (F.relu u)
                    (= op "sigmoid") (torch.sigmoid u)
                    (= op "tanh") (torch.tanh u)
                    (= op "scale") (* u 0.5)
                    (= op "times-h") (* u h)
                    (= op "minus-h") (- u h)
                    (= op "plus-bias") (+ u self.bias)
                    (= op "linear") (self.hid-to-hid u)
                    (= op "softmax") (F.softmax u :dim 1)
                    (= op "times-context") (* u context))))
    (if self.memory
      (do (setv c (+ (* c (torch.sigmoid u)) (torch.tanh u)))
          #((torch.tanh (+ u c)) c))
      #(u c)))

  (defn loss [self h target]
    (cond (= self.loss-name "sum") (.sum h)
          (= self.loss-name "mean") (.mean h)
          True (F.mse-loss h target))))


(defstaged recurrent-step [model opt inputs target]
  (.zero-grad opt)
  (setv h model.hid-init
        c (* model.hid-init 0.5)
        context (torch.tanh (model.in-to-hid (get inputs 0))))
  (for [x inputs]
    (setv [h c] (model.step h c x context)))
  (setv loss (model.loss h target))
  (.backward loss)
  (.step opt)
  (.item loss))


(defn describe [ops memory loss lengths]
  f"ops {ops}, memory {memory}, loss {loss}, lengths {lengths}")


(defn [(settings :max-examples 25 :deadline None :derandomize True)
       (given :ops (st.lists (st.sampled-from OPS) :min-size 0 :max-size 4)
              :memory (st.booleans)
              :loss (st.sampled-from LOSSES)
              :lengths (st.lists (st.integers 1 9) :min-size 1 :max-size 3)
              :momentum (st.sampled-from [0.0 0.9]))]
  test-random-cells-train-through-the-loop-as-in-pytorch [ops memory loss lengths momentum]
  (torch.manual-seed 7)
  (setv model (RandomCell ops memory loss)
        eager (copy.deepcopy model)
        opt (torch.optim.SGD (.parameters model) :lr 0.05 :momentum momentum)
        eager-opt (torch.optim.SGD (.parameters eager) :lr 0.05 :momentum momentum)
        step (hytorch.stage recurrent-step model opt (hytorch.ListOf (hytorch.TensorType [BATCH INPUT]))
                            (hytorch.TensorType [BATCH HIDDEN]))
        g (.manual-seed (torch.Generator) 3))
  (for [n lengths]
    (setv xs (torch.randn n BATCH INPUT :generator g)
          target (torch.randn BATCH HIDDEN :generator g)
          compiled (step model opt xs target)
          expected (recurrent-step eager eager-opt (list xs) target)
          scale (max 1.0 (abs expected)))
    (assert (<= (abs (- compiled expected)) (* 1e-4 scale))
            (describe ops memory loss lengths))
    (for [[[name p] q] (zip (.named-parameters model) (.parameters eager))]
      (assert (torch.allclose (.detach p) (.detach q) :atol 1e-4 :rtol 1e-4)
              (+ name ": " (describe ops memory loss lengths))))))
