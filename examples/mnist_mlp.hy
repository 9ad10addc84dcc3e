"The snek-LMS / Lantern MNIST demo in Hy: one defstaged training loop that trains eagerly in
PyTorch when called with a model, and compiled to C when staged.

  hy examples/mnist_mlp.hy                      # the five sections, then 10 epochs compiled
  hy examples/mnist_mlp.hy --epochs 1 --sections ir,c
  hy examples/mnist_mlp.hy --eager --limit 6000  # the same function, run by PyTorch

Fashion-MNIST from Debian's dataset-fashion-mnist is read by default; --data DIR reads any
MNIST-format directory (the original MNIST too)."

(require hytorch [defstaged]
         hyrule [-> ->>])
(import argparse
        time
        torch
        torch.nn :as nn
        torch.nn.functional :as F
        torch.optim :as optim
        hytorch
        hytorch.data [MNIST])

(setv SECTIONS ["original" "staged" "ir" "c" "run"])


(defclass Net [nn.Module]
  "Linear 784→50, relu, Linear 50→10, log_softmax: the demo's model."
  (defn __init__ [self]
    (.__init__ (super))
    (setv self.fc1 (nn.Linear 784 50)
          self.fc2 (nn.Linear 50 10)))

  (defn forward [self x]
    (-> x
        (.view -1 784)
        (self.fc1)
        (F.relu)
        (self.fc2)
        (F.log-softmax :dim 1))))


(defstaged train [model optimizer loader epochs log-interval]
  "Train `model` for `epochs` epochs, logging the running mean loss every `log-interval`
  batches. Returns the mean loss of the last epoch."
  (print "Start Training")
  (setv epoch 0
        mean-loss 0.0)
  (while (< epoch epochs)
    (setv epoch (+ epoch 1)
          total-loss 0.0)
    (for [[batch-idx [data target]] (enumerate loader)]
      (.zero-grad optimizer)
      (setv loss (-> data model (F.nll-loss target)))
      (.backward loss)
      (.step optimizer)
      (setv total-loss (+ total-loss (.item loss)))
      (when (= 0 (% (+ batch-idx 1) log-interval))
        (print (.format "Train Epoch: {} [{}/{} ({:.0f}%)]\tLoss: {:.6f}"
                        epoch
                        (* (+ batch-idx 1) loader.batch-size)
                        loader.count
                        (/ (* 100.0 (+ batch-idx 1)) (len loader))
                        (/ total-loss (+ batch-idx 1))))))
    (setv mean-loss (/ total-loss (len loader))))
  mean-loss)


(defstaged accuracy [model loader]
  "The fraction of `loader`'s images that `model` classifies right."
  (setv correct 0)
  (for [[data target] loader]
    (setv correct (+ correct (-> data model (.argmax :dim 1) (.eq target) (.sum) (.item)))))
  (/ correct loader.count))


(defn demo-setup [data-dir batch-size seed [limit None]]
  "The model, optimizer and loaders of the demo (SGD lr 0.0005 at batch 1; lr 0.01,
  momentum 0.5 otherwise), from PyTorch's own initialisation for `seed`; `limit` keeps the
  first images of each split only."
  (torch.manual-seed seed)
  (setv model (Net)
        [lr momentum] (if (= batch-size 1) [0.0005 0.0] [0.01 0.5])
        optimizer (optim.SGD (.parameters model) :lr lr :momentum momentum)
        train-loader (MNIST :root data-dir :train True :batch-size batch-size :shuffle True :seed seed
                            :limit limit)
        test-loader (MNIST :root data-dir :train False :batch-size 1000 :limit limit))
  #(model optimizer train-loader test-loader))


(defn banner [title]
  (print "==============================================================")
  (print (.center title 62 "="))
  (print "=============================================================="))


(defn main [[argv None]]
  (setv parser (argparse.ArgumentParser :description "Train the snek-LMS MNIST demo, compiled.")
        _ (.add-argument parser "--epochs" :type int :default 10)
        _ (.add-argument parser "--batch-size" :type int :default 1)
        _ (.add-argument parser "--log-interval" :type int :default 6000)
        _ (.add-argument parser "--seed" :type int :default 1)
        _ (.add-argument parser "--data" :default None :help "an MNIST-format directory")
        _ (.add-argument parser "--limit" :type int :default None :help "use the first N images")
        _ (.add-argument parser "--sections" :default (.join "," SECTIONS)
                         :help (+ "which of " (.join "," SECTIONS) " to print"))
        _ (.add-argument parser "--eager" :action "store_true" :help "train in PyTorch instead")
        args (.parse-args parser argv)
        sections (.split args.sections ",")
        [model optimizer train-loader test-loader] (demo-setup args.data args.batch-size args.seed args.limit))
  (when args.eager
    (train model optimizer train-loader args.epochs args.log-interval)
    (with [_ (torch.no-grad)]
      (print (.format "Test accuracy: {:.2%}" (accuracy model test-loader))))
    (return))
  (setv started (time.perf-counter)
        trainer (hytorch.stage train model optimizer train-loader int int)
        evaluate (hytorch.stage accuracy model test-loader)
        compile-seconds (- (time.perf-counter) started))
  (when (in "original" sections)
    (banner "ORIGINAL SOURCE")
    (print train.original-source))
  (when (in "staged" sections)
    (banner "STAGED SOURCE")
    (print trainer.staged-source))
  (when (in "ir" sections)
    (banner "IR CODE")
    (print trainer.ir))
  (when (in "c" sections)
    (banner "GENERATED CODE")
    (print trainer.c-source))
  (when (in "run" sections)
    (banner "EXECUTING CODE")
    (print (.format "(staged and compiled in {:.2f} s{})" compile-seconds
                    (if trainer.cached ", from the cache" "")))
    (setv started (time.perf-counter))
    (trainer model optimizer train-loader args.epochs args.log-interval)
    (print (.format "Trained {} epoch(s) in {:.2f} s" args.epochs (- (time.perf-counter) started)))
    (print (.format "Test accuracy: {:.2%}" (evaluate model test-loader)))
    (banner "EXITING PROGRAM")))


(when (= __name__ "__main__")
  (main))
