"What cannot be lifted into a staging run is a StagingError naming the .hy form."

(require hytorch [defstaged]
         hyrule [->])
(import pytest
        torch
        torch.nn.functional :as F
        hytorch
        hytorch.data [MNIST]
        hytorch.examples.mnist_mlp [Net])

(setv GLOBAL-OPTIMIZER None)

(defstaged steps-a-global-optimizer [model loader]
  (for [[data target] loader]
    (-> data model (F.nll-loss target) (.backward))
    (.step GLOBAL-OPTIMIZER)))

(defn test-a-real-optimizer-stepped-while-staging []
  (global GLOBAL-OPTIMIZER)
  (setv model (Net)
        GLOBAL-OPTIMIZER (torch.optim.SGD (.parameters model) :lr 0.1)
        before (.clone (.detach model.fc1.weight)))
  (with [e (pytest.raises hytorch.StagingError)]
    (hytorch.lms-compile steps-a-global-optimizer model (MNIST :batch-size 4 :limit 8)))
  (assert (in "pass the optimizer to the defstaged function" (str e.value)))
  (assert (in "test_lifting_errors.hy:17" e.value.where))
  (assert (torch.equal before model.fc1.weight) "nothing trained at generation time"))

(defstaged one-epoch [model optimizer loader]
  (for [[data target] loader]
    (.zero-grad optimizer)
    (-> data model (F.nll-loss target) (.backward))
    (.step optimizer)))

(defn test-only-the-optimizers-of-the-table-are-staged []
  (setv model (Net))
  (with [e (pytest.raises hytorch.StagingError)]
    (hytorch.lms-compile one-epoch model (torch.optim.RMSprop (.parameters model)) (MNIST :limit 8)))
  (assert (in "RMSprop cannot be staged; use torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW"
              (str e.value))))

(defn test-a-loader-of-other-images-is-refused-at-call-time []
  (setv model (Net)
        optimizer (torch.optim.SGD (.parameters model) :lr 0.1)
        trainer (hytorch.stage one-epoch model optimizer (MNIST :batch-size 4 :limit 8)))
  (with [e (pytest.raises ValueError)]
    (trainer model optimizer (MNIST :batch-size 8 :limit 8)))
  (assert (in "staged for batches of 4 samples: inputs [1, 28, 28]" (str e.value))))

(defn test-a-model-of-other-shapes-is-refused-at-call-time []
  (setv model (Net)
        loader (MNIST :batch-size 4 :limit 8)
        optimizer (torch.optim.SGD (.parameters model) :lr 0.1)
        trainer (hytorch.stage one-epoch model optimizer loader)
        other (torch.nn.Sequential (torch.nn.Linear 784 20) (torch.nn.Linear 20 10))
        other-optimizer (torch.optim.SGD (.parameters other) :lr 0.1))
  (with [e (pytest.raises ValueError)]
    (trainer other other-optimizer loader))
  (assert (in "argument 1 (Sequential) has no parameter `fc1.weight`" (str e.value)))
  (with [e (pytest.raises ValueError)]
    (trainer model optimizer 5))
  (assert (in "argument 3 is of type int; the program was staged with one of type MNIST" (str e.value))))
