"A regression on data built in NumPy: y = X w + b + noise, fitted by a small MLP with
mse_loss and SGD. hytorch.data.ArrayLoader gives the batches: eagerly as torch tensors, and,
in the compiled training loop, read by C straight from the NumPy arrays. The same defstaged
function trains compiled and eagerly; both print their losses, side by side.

  hy examples/regression.hy                          # compiled, then eager
  hy examples/regression.hy --epochs 5 --batch-size 16 --samples 1000 --ir"

(require hytorch [defstaged]
         hyrule [->])
(import argparse
        copy
        time
        numpy :as np
        torch
        torch.nn :as nn
        torch.nn.functional :as F
        torch.optim :as optim
        hytorch
        hytorch.data [ArrayLoader])


(setv NOISE-VARIANCE 0.01)


(defn make-data [samples features seed]
  "`samples` rows of `features` standard normal inputs and targets X w + b + noise of
  variance NOISE-VARIANCE (float64, as NumPy makes them): #(X y w b).

    (make-data 100 4 0)   ; => #(X [100 4], y [100 1], w [4 1], b)"
  (setv rng (np.random.default-rng seed)
        X (.standard-normal rng #(samples features))
        w (.standard-normal rng #(features 1))
        b 0.5
        y (+ (@ X w) b (* (np.sqrt NOISE-VARIANCE) (.standard-normal rng #(samples 1)))))
  #(X y w b))


(defclass Net [nn.Module]
  "Linear features→16, relu, Linear 16→1."
  (defn __init__ [self features]
    (.__init__ (super))
    (setv self.hidden (nn.Linear features 16)
          self.out (nn.Linear 16 1)))

  (defn forward [self x]
    (-> x (self.hidden) (F.relu) (self.out))))


(defstaged train [model optimizer loader epochs]
  "Train `model` on `loader`'s batches for `epochs` epochs with mean squared error, printing
  each epoch's mean loss. Returns the last epoch's."
  (setv epoch 0
        mean-loss 0.0)
  (while (< epoch epochs)
    (setv epoch (+ epoch 1)
          total 0.0)
    (for [[i [data target]] (enumerate loader)]
      (.zero-grad optimizer)
      (setv loss (F.mse-loss (model data) target))
      (.backward loss)
      (.step optimizer)
      (setv total (+ total (.item loss))))
    (setv mean-loss (/ total (len loader)))
    (print (.format "Epoch {}: mean loss {:.6f}" epoch mean-loss)))
  mean-loss)


(defn setup [X y batch-size lr seed]
  "A model, its SGD optimizer and a shuffled loader over X, y; the model starts from
  PyTorch's initialisation for `seed`."
  (torch.manual-seed seed)
  (setv model (Net (get X.shape 1)))
  #(model
    (optim.SGD (.parameters model) :lr lr :momentum 0.9)
    (ArrayLoader X y :batch-size batch-size :shuffle True :seed seed)))


(defn max-difference [a b]
  "The largest difference between the parameters of two models."
  (max (gfor [p q] (zip (.parameters a) (.parameters b)) (.item (.max (.abs (- p q)))))))


(defn main [[argv None]]
  (setv parser (argparse.ArgumentParser :description "A regression trained compiled and eagerly.")
        _ (.add-argument parser "--samples" :type int :default 2000)
        _ (.add-argument parser "--features" :type int :default 8)
        _ (.add-argument parser "--epochs" :type int :default 10)
        _ (.add-argument parser "--batch-size" :type int :default 32)
        _ (.add-argument parser "--lr" :type float :default 0.01)
        _ (.add-argument parser "--seed" :type int :default 0)
        _ (.add-argument parser "--ir" :action "store_true" :help "print the staged IR")
        args (.parse-args parser argv)
        [X y w b] (make-data args.samples args.features args.seed)
        [model optimizer loader] (setup X y args.batch-size args.lr args.seed)
        eager-model (copy.deepcopy model)
        eager-optimizer (optim.SGD (.parameters eager-model) :lr args.lr :momentum 0.9)
        eager-loader (ArrayLoader X y :batch-size args.batch-size :shuffle True :seed args.seed))
  (print (.format "{} samples of {} features, y = X w + {} + noise; batches of {}, {} per epoch"
                  args.samples args.features b args.batch-size (len loader)))
  (setv started (time.perf-counter)
        trainer (hytorch.stage train model optimizer loader int))
  (print (.format "Staged and compiled in {:.2f} s" (- (time.perf-counter) started)))
  (when args.ir
    (print trainer.ir))
  (print "Compiled:")
  (setv started (time.perf-counter)
        compiled-loss (trainer model optimizer loader args.epochs)
        compiled-seconds (- (time.perf-counter) started))
  (print "Eager PyTorch:")
  (setv started (time.perf-counter)
        eager-loss (train eager-model eager-optimizer eager-loader args.epochs)
        eager-seconds (- (time.perf-counter) started))
  (print (.format "Final mean loss: compiled {:.6f} in {:.3f} s, eager {:.6f} in {:.3f} s"
                  compiled-loss compiled-seconds eager-loss eager-seconds))
  (print (.format "Largest weight difference, compiled vs eager: {:.2e}"
                  (max-difference model eager-model)))
  (print (.format "Mean squared error of the noise alone: {:.6f}; of predicting the mean: {:.6f}"
                  NOISE-VARIANCE (float (np.var y)))))


(when (= __name__ "__main__")
  (main))
