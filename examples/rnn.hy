"The HyTorch blog post's RNN: a loop over a list whose length is known only at run time.

    hy examples/rnn.hy [--steps N] [--limit N]

1. The post's `TestModel` compiled once, with `(for [x inputs] ...)` staged (the list's type
   is `hytorch.ListOf`): it runs on 10, 9 and 1 inputs and matches PyTorch on each. Staged
   with an ordinary list instead, the loop unrolls; both IRs are printed.
2. `torch.jit.trace`, traced on 10 inputs, fails on 9, as the post shows; the compiled
   function does not.
3. Training through the loop (backpropagation through time): Fashion-MNIST images read as
   sequences of rows, cut to random lengths, classified by the RNN's last hidden state; each
   step's sequence has its own length. Compiled and eager PyTorch train side by side from
   the same weights; the losses, the test accuracy and the time of each are printed."

(require hytorch [defstaged]
         hyrule [->])
(import argparse
        copy
        random
        time
        torch
        torch.nn :as nn
        torch.nn.functional :as F
        hytorch
        hytorch.data [MNIST])

(setv BATCH 4 ROW 28 HIDDEN 32 CLASSES 10)


(defclass TestModel [nn.Module]
  "The post's model: `hid_init` repeated over the batch, then
  hid = sigmoid(hid_to_hid(hid) + in_to_hid(x)) for each x of the list."
  (defn __init__ [self input-dim hidden-dim]
    (.__init__ (super))
    (setv self.hid_init (nn.Parameter (torch.zeros 1 hidden-dim))
          self.in_to_hid (nn.Linear input-dim hidden-dim)
          self.hid_to_hid (nn.Linear hidden-dim hidden-dim)))

  (defstaged forward [self inputs]
    (setv hid (.repeat self.hid_init (get (. (get inputs 0) shape) 0) 1))
    (for [x inputs]
      (setv hid (-> (self.hid_to_hid hid) (+ (self.in_to_hid x)) (torch.sigmoid))))
    hid))


(defclass Classifier [nn.Module]
  "The RNN's last hidden state, classified."
  (defn __init__ [self]
    (.__init__ (super))
    (setv self.rnn (TestModel ROW HIDDEN)
          self.out (nn.Linear HIDDEN CLASSES)))

  (defstaged forward [self rows]
    (-> (self.rnn rows) (self.out) (F.log_softmax :dim 1))))


(defstaged train-step [model opt rows labels]
  (.zero_grad opt)
  (setv loss (F.nll_loss (model rows) labels))
  (.backward loss)
  (.step opt)
  (.item loss))


(defn same [a b]
  (.item (.max (.abs (- (torch.as-tensor a) (.detach b))))))


(defn the-post []
  (torch.manual_seed 0)
  (setv [batch-dim input-dim hidden-dim num-steps] [4 16 32 10]
        model (TestModel input-dim hidden-dim)
        inputs (hytorch.ListOf (hytorch.TensorType [batch-dim input-dim]))
        compiled (hytorch.stage model.forward inputs))
  (print "Staged: the loop over the list is a loop of the compiled code")
  (print " " compiled.ir)
  (for [n [num-steps (- num-steps 1) 1]]
    (setv test-inputs (lfor _ (range n) (torch.randn batch-dim input-dim)))
    (print f"  {n :2} inputs: largest difference from PyTorch {(same (compiled test-inputs) (model test-inputs)) :.2e}"))
  (setv unrolled (hytorch.lms-compile (fn [x] (model [x x x]))
                                      (hytorch.TensorType [batch-dim input-dim])))
  (print "An ordinary list of three: the loop unrolls at generation time")
  (print " " unrolled)
  (setv test-inputs (lfor _ (range num-steps) (torch.randn batch-dim input-dim))
        new-test-inputs (cut test-inputs 1 None))
  (with [_ (torch.no_grad)]
    (setv traced (torch.jit.trace model #(test-inputs) :check-trace False)))
  (try
    (traced new-test-inputs)
    (print "torch.jit.trace ran on 9 inputs (unexpected)")
    (except [e RuntimeError]
      (print f"torch.jit.trace, traced on 10 inputs, on 9: {(get (.splitlines (str e)) -1)}")))
  (print f"HyTorch on the same 9 inputs: largest difference from PyTorch {(same (compiled new-test-inputs) (model new-test-inputs)) :.2e}"))


(defn sequences [train limit seed]
  "Batches of BATCH images as lists of rows ([ROWS, BATCH, ROW], one tensor), each cut to a
  random length from 10 to 28, with their labels."
  (setv lengths (random.Random seed))
  (gfor [images labels] (MNIST :train train :batch-size BATCH :shuffle train :seed seed
                               :limit limit :drop-last True)
        :setv rows (.contiguous (.permute (.squeeze images 1) 1 0 2))
        #((cut rows 0 (.randint lengths 10 28)) labels)))


(defn accuracy [forward limit]
  (setv right 0 count 0)
  (for [[rows labels] (sequences False limit 1)]
    (+= right (.item (.sum (= (.argmax (torch.as-tensor (forward rows)) 1) labels))))
    (+= count (len labels)))
  (/ right count))


(defn training [steps limit]
  (torch.manual_seed 0)
  (setv model (Classifier)
        eager (copy.deepcopy model)
        opt (torch.optim.SGD (.parameters model) :lr 0.1 :momentum 0.9)
        eager-opt (torch.optim.SGD (.parameters eager) :lr 0.1 :momentum 0.9)
        rows-type (hytorch.ListOf (hytorch.TensorType [BATCH ROW]))
        step (hytorch.stage train-step model opt rows-type (hytorch.TensorType [BATCH] torch.int64))
        data (list (sequences True (* steps BATCH) 0))
        seconds {"HyTorch" 0.0 "PyTorch" 0.0}
        worst 0.0)
  (print f"Training through the loop: {(len data)} steps, sequences of 10 to 28 rows")
  (for [[i [rows labels]] (enumerate data)]
    (setv t0 (time.perf-counter)
          loss (step model opt rows labels)
          t1 (time.perf-counter)
          eager-loss (train-step eager eager-opt rows labels)
          t2 (time.perf-counter)
          worst (max worst (abs (- loss eager-loss))))
    (+= (get seconds "HyTorch") (- t1 t0))
    (+= (get seconds "PyTorch") (- t2 t1))
    (when (= (% (+ i 1) (max 1 (// (len data) 5))) 0)
      (print f"  step {(+ i 1) :5}  length {(len rows) :2}  loss {loss :.4f} (PyTorch {eager-loss :.4f})")))
  (print f"  largest difference of a step's loss from PyTorch's: {worst :.2e}")
  (print f"  time: HyTorch {(get seconds "HyTorch") :.2f} s, PyTorch eager {(get seconds "PyTorch") :.2f} s"
         f"({(/ (get seconds "PyTorch") (max (get seconds "HyTorch") 1e-9)) :.1f}x)")
  (setv forward (hytorch.stage model.forward rows-type))
  (.eval model)
  (print f"  test accuracy on sequences of 10 to 28 rows: {(* 100 (accuracy forward (* 250 BATCH))) :.1f}%"))


(defn main [[argv None]]
  (setv parser (argparse.ArgumentParser :description "The blog post's RNN, compiled and trained.")
        _ (.add-argument parser "--steps" :type int :default 2000))
  (setv args (.parse-args parser argv))
  (the-post)
  (training args.steps None))


(when (= __name__ "__main__")
  (main))
