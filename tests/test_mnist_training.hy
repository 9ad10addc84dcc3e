"The MNIST demo trained as compiled C: parity with PyTorch step for step, evaluation, the
snek-LMS demo IR, write-back of trained values."

(require hytorch [defstaged]
         hyrule [->])
(import copy
        pytest
        torch
        torch.nn.functional :as F
        hytorch
        hytorch.data [MNIST]
        hytorch.examples.mnist_mlp [Net train accuracy demo-setup])

(setv LOSS-TOLERANCE 1e-4)


(defstaged train-logging-losses [model optimizer loader epochs]
  "Train, printing every step's loss with 8 decimals."
  (setv epoch 0)
  (while (< epoch epochs)
    (setv epoch (+ epoch 1))
    (for [[data target] loader]
      (.zero-grad optimizer)
      (setv loss (-> data model (F.nll-loss target)))
      (.backward loss)
      (.step optimizer)
      (print (.format "{:.8f}" (.item loss))))))


(defn losses-of [capfd run]
  (.readouterr capfd)
  (run)
  (lfor line (.splitlines (. (.readouterr capfd) out)) (float line)))


(defn twin-setups [batch-size lr momentum limit seed]
  "Two identical models, optimizers and loaders (same weights, same shuffling)."
  (torch.manual-seed seed)
  (setv model (Net)
        twin (copy.deepcopy model))
  (lfor m [model twin]
        #(m (torch.optim.SGD (.parameters m) :lr lr :momentum momentum)
            (MNIST :train True :batch-size batch-size :shuffle True :seed seed :limit limit))))


(defn [(pytest.mark.parametrize "batch_size,lr,momentum,limit,epochs"
                                [#(1 0.0005 0.0 1000 1) #(64 0.01 0.5 1000 4)])]
  test-compiled-training-matches-eager-step-for-step [capfd batch-size lr momentum limit epochs]
  (setv [[m1 o1 l1] [m2 o2 l2]] (twin-setups batch-size lr momentum limit 7)
        eager (losses-of capfd (fn [] (train-logging-losses m1 o1 l1 epochs)))
        compiled-fn (hytorch.stage train-logging-losses m2 o2 l2 int)
        compiled (losses-of capfd (fn [] (compiled-fn m2 o2 l2 epochs))))
  (assert (= (len eager) (len compiled) (* epochs (len l1))))
  (when (= batch-size 1)
    (assert (>= (len compiled) 1000)))
  (setv worst (max (gfor [a b] (zip eager compiled) (abs (- a b)))))
  (assert (< worst LOSS-TOLERANCE) f"largest loss difference {worst}")
  (for [[p q] (zip (.parameters m1) (.parameters m2))]
    (assert (torch.allclose p q :atol 1e-4)))
  (when momentum
    (for [[p q] (zip (.parameters m1) (.parameters m2))]
      (assert (torch.allclose (get (get o1.state p) "momentum_buffer")
                              (get (get o2.state q) "momentum_buffer") :atol 1e-4))))
  (assert (= l1.rng.state l2.rng.state) "the loaders' shuffling continues from the same state"))


(defn test-demo-reaches-80-percent-after-one-epoch [capfd]
  (setv [model optimizer train-loader test-loader] (demo-setup None 1 1)
        trainer (hytorch.stage train model optimizer train-loader int int)
        evaluate (hytorch.stage accuracy model test-loader)
        initial (.clone (.detach model.fc1.weight))
        mean-loss (trainer model optimizer train-loader 1 6000)
        log (. (.readouterr capfd) out))
  (assert (in "Train Epoch: 1 [60000/60000 (100%)]" log))
  (assert (< mean-loss 0.7))
  (assert (not (torch.equal initial model.fc1.weight)) "trained weights are written back")
  (setv compiled-accuracy (evaluate model test-loader))
  (with [_ (torch.no-grad)]
    (setv eager-accuracy (accuracy model test-loader)))
  (assert (> compiled-accuracy 0.8))
  (assert (< (abs (- compiled-accuracy eager-accuracy)) 1e-3)))


(defn test-snek-lms-demo-ir-compiles-and-trains [capfd]
  (setv text (.read-text (/ (. (hy.I.pathlib.Path __file__) parent) "data" "snek_lms_mnist_demo.ir"))
        demo (hytorch.compile-ir text))
  (setv initial (.copy (demo.tensor "x5")))
  (assert (< -0.5 (.min initial)) "unbound tensors start uniform in [-0.5, 0.5]")
  (assert (< (.max initial) 0.5))
  (assert (> (.std initial) 0.25))
  (demo 0)
  (setv log (.splitlines (. (.readouterr capfd) out))
        losses (lfor l log :if (.startswith l "Train Epoch") (float (get (.split l "Loss: ") 1))))
  (assert (= (get log 0) "Start Training"))
  (assert (in "Epoch 10" log))
  (assert (= (len losses) 100))
  (assert (< (get losses -1) (get losses 0)))
  (assert (< (get losses -1) 0.6))
  (assert (not (.all (= initial (demo.tensor "x5")))) "the weights trained"))


(defn test-printed-ir-of-the-demo-compiles-again [capfd]
  (setv [model optimizer train-loader _] (demo-setup None 1 1)
        text (str (hytorch.lms-compile train model optimizer train-loader int int))
        again (hytorch.compile-ir text object object object int int))
  (assert (= again.ir text))
  ;; Read back from text, nothing is bound: the weights start uniform and the loader is the
  ;; default Fashion-MNIST training set, batch 1, shuffled, as the IR says.
  (setv loss (again None None None 1 20000)
        log (. (.readouterr capfd) out)
        logged (lfor l (.splitlines log) :if (.startswith l "Train Epoch") (float (get (.split l "Loss: ") 1))))
  (assert (in "Train Epoch: 1 [60000/60000 (100%)]" log))
  (assert (= (len logged) 3))
  (assert (< (get logged 2) (get logged 0)))
  (assert (< (abs (- loss (get logged 2))) 1e-6)))


(defn test-compiled-code-runs-without-torch []
  (setv ir-path (str (/ (. (hy.I.pathlib.Path __file__) parent) "data" "snek_lms_mnist_demo.ir"))
        script (+ "import sys; sys.modules['torch'] = None\n"
                  "import hy, hytorch, pathlib\n"
                  f"text = pathlib.Path({(repr ir-path)}).read_text()\n"
                  "demo = hytorch.compile_ir(text.replace('(< x16 10)', '(< x16 1)'))\n"
                  "demo(0)\n"
                  "print('torch' in sys.modules and sys.modules['torch'] is not None)\n")
        out (. (hy.I.subprocess.run [hy.I.sys.executable "-c" script] :capture-output True :text True :check True) stdout))
  (assert (in "Train Epoch: 1 (60000/60000 (100%))" out))
  (assert (.endswith (.strip out) "False")))


(defn test-a-loader-of-another-size-is-refused [capfd]
  ;; `train` reads `loader.count` and `(len loader)` while staging (its log line), so they are
  ;; constants in the program: a loader of another size must not run it with them.
  (setv [[m1 o1 l300] [m2 o2 l600]] [(get (twin-setups 1 0.0005 0.0 300 3) 0)
                                     (get (twin-setups 1 0.0005 0.0 600 3) 0)]
        trainer (hytorch.stage train m1 o1 l300 int int))
  (with [e (pytest.raises ValueError)]
    (trainer m2 o2 l600 1 100))
  (assert (in "holds 600 samples in 600 batches" (str e.value)))
  (assert (in "staged with one of 300 samples" (str e.value)))
  ;; Same size, other contents order: accepted.
  (setv same (MNIST :train True :batch-size 1 :shuffle True :seed 5 :limit 300))
  (trainer m1 o1 same 1 100)
  (assert (in "Train Epoch: 1 [300/300 (100%)]" (. (.readouterr capfd) out))))


(defn test-staging-and-compiling-run-without-torch []
  ;; Scalar programs need neither torch to stage nor to run.
  (setv script (+ "import sys; sys.modules['torch'] = None\n"
                  "import hy, hytorch\n"
                  "from hytorch.examples import power\n"
                  "print(hytorch.stage(power.power3, int)(3), hytorch.stage(power.count_up, int)(5))\n"
                  "print('torch' in sys.modules and sys.modules['torch'] is not None)\n")
        out (. (hy.I.subprocess.run [hy.I.sys.executable "-c" script] :capture-output True :text True)
               stdout))
  (assert (= (.split out) ["27" "5" "False"]) out))
