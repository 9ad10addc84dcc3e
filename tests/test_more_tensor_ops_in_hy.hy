"Issue 9's tensor operations (test_more_tensor_ops.py) from Hy: what is not supported is a
StagingError naming what and the form (file:line) that staged it; training on the rows of a
data loader's batches (known at run time, the last batch short) matches eager PyTorch."
(require hytorch [defstaged])
(import pytest
        torch
        torch.nn :as nn
        torch.nn.functional :as F
        hytorch
        hytorch.data [MNIST])


(setv UNSUPPORTED
  [[(fn [x] (/ x (cut (.sum x :dim 0) 2))) "`/` of tensors of shapes [3, 4] and [2]: they do not broadcast"]
   [(fn [x] (torch.div x 2.0 :rounding-mode "floor")) "division with rounding_mode='floor' is not supported"]
   [(fn [x] (.clamp x :min x)) "clamp's min must be a number known at staging, got a tensor"]
   [(fn [x] (torch.clamp x)) "clamp needs min or max"]
   [(fn [x] (.sum x :dim [])) "sum over dim=[] is not supported on staged tensors"]
   [(fn [x] (.mean x :keepdim True)) "mean with keepdim=True needs a dim"]
   [(fn [x] (.sum x 5)) "sum: dim 5 is out of range for a 2-dimensional tensor"]
   [(fn [x] (@ x x)) "matmul of [3, 4] float32 and [3, 4] float32: shapes [..., m, k] and [k, n] expected"]
   [(fn [x] (@ x (get x 0))) "matmul of 2-D and 1-D tensors is not supported"]
   [(fn [x] (. (.view x 1 3 4) T)) "`.T` of a staged tensor of more than 2 dims is not supported"]
   [(fn [x] (.transpose (.view x 1 3 4) 0 2)) "transpose of dims 0 and 2 is not supported on staged tensors"]
   [(fn [x] (.t (.view x 1 3 4))) "t() needs a tensor of at most 2 dims, got 3"]
   [(fn [x] (.unsqueeze x 3)) "unsqueeze: dim 3 is out of range for a 2-dimensional tensor"]
   [(fn [x] (get x (slice None None 2))) "slices of a staged tensor with a step are not supported"]
   [(fn [x] (get x None)) "indexing a staged tensor with NoneType is not supported"]
   [(fn [x] (get x 3)) "index 3 is out of range for dim 0 of size 3"]
   [(fn [x] (get x #(0 0 0))) "too many indices (3) for a staged tensor of 2 dims"]
   [(fn [x] (torch.cat [x (.t x)])) "cat along dim 0 needs tensors whose dtypes and other dims agree"]
   [(fn [x] (torch.stack [x (get x (slice 1 None))])) "cat along dim 0 needs tensors whose dtypes and other dims agree"]
   [(fn [x] (torch.cat x)) "cat needs a non-empty list of tensors"]
   [(fn [x] (torch.cat [x (.argmax x 1)] 1)) "cat along dim 1 needs tensors whose dtypes and other dims agree"]
   [(fn [x] (torch.stack [x] 3)) "stack: dim 3 is out of range for 2-dimensional tensors"]
   [(fn [x] (.long (.float x))) "`.long` of a staged tensor is not supported"]
   [(fn [x] (// x 2)) "`//` and `%` of a staged tensor is not supported"]
   [(fn [x] (/ x (.item (.sum x)))) "`/` of a staged tensor and a number computed at run time is not supported"]])


(defn [(pytest.mark.parametrize "case" (range (len UNSUPPORTED)))]
  test-an-unsupported-variant-names-the-form [case]
  (setv [f message] (get UNSUPPORTED case))
  (with [e (pytest.raises hytorch.StagingError)]
    (hytorch.lms-compile f (hytorch.TensorType [3 4])))
  (assert (in message (str e.value)))
  (assert (in f"test_more_tensor_ops_in_hy.hy:{f.__code__.co_firstlineno}:" e.value.where) e.value.where))


(defclass RowOps [nn.Module]
  "The ops on the rows of a batch: each image's first rows cut off, the rest centred and
  scaled, centred over the batch, times a vector (broadcast over the batch's rows), a matmul
  by a weight, a clamp."
  (defn __init__ [self]
    (.__init__ (super))
    (setv self.w (nn.Parameter (* (torch.randn (* 20 28) 10) 0.05))
          self.scale (nn.Parameter (+ 1.0 (* (torch.randn (* 20 28)) 0.1)))))

  (defn forward [self images]
    (setv x (.reshape (get (.view images -1 28 28) #((slice None) (slice 8 None) (slice None)))
                      -1 (* 20 28))
          x (- x (.mean x :dim 1 :keepdim True))
          x (/ x (+ (.mean (* x x) 1 :keepdim True) 1.0))
          x (* (- x (.mean x 0)) self.scale))
    (.clamp (@ x self.w) -3.0 3.0)))


(defstaged train-epoch [model optimizer loader]
  (for [[images labels] loader]
    (.zero-grad optimizer)
    (setv loss (F.cross-entropy (model images) labels))
    (.backward loss)
    (.step optimizer)))


(defn test-training-on-a-loaders-batches-matches-eager []
  ;; 100 images in batches of 32: the last batch has 4 rows
  (torch.manual-seed 3)
  (setv compiled-model (RowOps) eager-model (RowOps))
  (.load-state-dict eager-model (.state-dict compiled-model))
  (setv [compiled-opt eager-opt] (lfor m [compiled-model eager-model]
                                       (torch.optim.SGD (.parameters m) :lr 0.1 :momentum 0.5))
        [compiled-loader eager-loader] (lfor _ "ce" (MNIST :train True :batch-size 32 :limit 100))
        step (hytorch.stage train-epoch compiled-model compiled-opt compiled-loader))
  (for [_ (range 2)]
    (step compiled-model compiled-opt compiled-loader)
    (train-epoch eager-model eager-opt eager-loader))
  (for [[p q] (zip (.parameters compiled-model) (.parameters eager-model))]
    (torch.testing.assert-close (.detach p) (.detach q) :rtol 1e-4 :atol 1e-5)))
