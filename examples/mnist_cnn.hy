"The HyTorch blog post's CNN (PyTorch's MNIST example) in Hy with `->`, trained compiled to C
at batch 64 on Fashion-MNIST and evaluated with dropout off; or, with --eager, the same
functions run by PyTorch.

  hy examples/mnist_cnn.hy                          # 1 epoch compiled, then the test accuracy
  hy examples/mnist_cnn.hy --limit 2000 --sections ir,c
  hy examples/mnist_cnn.hy --eager --limit 2000     # the same functions, run by PyTorch

`train` puts the model in training mode and `accuracy` in eval mode, as in PyTorch: dropout
is staged into the training program (its masks drawn by the compiled code, from a splitmix64
state seeded from torch's generator at each call) and is the identity in the evaluation
program."

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

(setv SECTIONS ["ir" "c" "run"])


(defclass Net [nn.Module]
  "conv 1→32 3x3, relu, conv 32→64 3x3, relu, max_pool2d 2, dropout 0.25, flatten,
  fc 9216→128, relu, dropout 0.5, fc 128→10, log_softmax: the blog post's model."
  (defn __init__ [self]
    (.__init__ (super))
    (setv self.conv1 (nn.Conv2d 1 32 3 1)
          self.conv2 (nn.Conv2d 32 64 3 1)
          self.dropout1 (nn.Dropout 0.25)
          self.dropout2 (nn.Dropout 0.5)
          self.fc1 (nn.Linear 9216 128)
          self.fc2 (nn.Linear 128 10)))

  (defn forward [self x]
    (-> x
        self.conv1
        F.relu
        self.conv2
        F.relu
        (F.max-pool2d 2)
        self.dropout1
        (torch.flatten 1)
        (self.fc1)
        (F.relu)
        (self.dropout2)
        (self.fc2)
        (F.log-softmax :dim 1))))


(defstaged train [model optimizer loader epochs log-interval]
  "Train `model` for `epochs` epochs, logging the running mean loss every `log-interval`
  batches. Returns the mean loss of the last epoch."
  (.train model)
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
  "The fraction of `loader`'s images that `model`, in eval mode, classifies right."
  (.eval model)
  (setv correct 0)
  (for [[data target] loader]
    (setv correct (+ correct (-> data model (.argmax :dim 1) (.eq target) (.sum) (.item)))))
  (/ correct loader.count))


(defn setup [data-dir batch-size seed [limit None]]
  "The model (PyTorch's initialisation for `seed`), SGD (lr 0.01, momentum 0.5) and the
  loaders; `limit` keeps the first images of each split only."
  (torch.manual-seed seed)
  (setv model (Net)
        optimizer (optim.SGD (.parameters model) :lr 0.01 :momentum 0.5)
        train-loader (MNIST :root data-dir :train True :batch-size batch-size :shuffle True
                            :seed seed :limit limit)
        test-loader (MNIST :root data-dir :train False :batch-size 1000 :limit limit))
  #(model optimizer train-loader test-loader))


(defn main [[argv None]]
  (setv parser (argparse.ArgumentParser :description "Train the blog post's CNN, compiled.")
        _ (.add-argument parser "--epochs" :type int :default 1)
        _ (.add-argument parser "--batch-size" :type int :default 64)
        _ (.add-argument parser "--log-interval" :type int :default 100)
        _ (.add-argument parser "--seed" :type int :default 1)
        _ (.add-argument parser "--data" :default None :help "an MNIST-format directory")
        _ (.add-argument parser "--limit" :type int :default None :help "use the first N images")
        _ (.add-argument parser "--sections" :default "run"
                         :help (+ "which of " (.join "," SECTIONS) " to print"))
        _ (.add-argument parser "--eager" :action "store_true" :help "train in PyTorch instead")
        args (.parse-args parser argv)
        sections (.split args.sections ",")
        [model optimizer train-loader test-loader] (setup args.data args.batch-size args.seed
                                                          args.limit))
  (when args.eager
    (setv started (time.perf-counter))
    (train model optimizer train-loader args.epochs args.log-interval)
    (print (.format "Trained {} epoch(s) in {:.2f} s (PyTorch eager)" args.epochs
                    (- (time.perf-counter) started)))
    (with [_ (torch.no-grad)]
      (print (.format "Test accuracy: {:.2%}" (accuracy model test-loader))))
    (return))
  (setv started (time.perf-counter)
        trainer (hytorch.stage train model optimizer train-loader int int)
        evaluate (hytorch.stage accuracy model test-loader))
  (print (.format "(staged and compiled in {:.2f} s)" (- (time.perf-counter) started)))
  (when (in "ir" sections)
    (print trainer.ir))
  (when (in "c" sections)
    (print trainer.c-source))
  (when (in "run" sections)
    (setv started (time.perf-counter))
    (trainer model optimizer train-loader args.epochs args.log-interval)
    (print (.format "Trained {} epoch(s) in {:.2f} s (compiled)" args.epochs
                    (- (time.perf-counter) started)))
    (print (.format "Test accuracy: {:.2%}" (evaluate model test-loader)))))


(when (= __name__ "__main__")
  (main))
