"A compiled model called from plain Python: a tensor in (copied from the tensor passed at
call time), a tensor out (a numpy array)."

(require hytorch [defstaged]
         hyrule [->])
(import numpy :as np
        pytest
        torch
        torch.nn.functional :as F
        hytorch
        hytorch.examples.mnist_mlp [Net])


(defstaged log-probabilities [model images]
  (model images))


(defstaged predicted-class-count [model images klass]
  (-> (model images) (.argmax :dim 1) (.eq klass) (.sum)))


(defn test-a-compiled-model-returns-what-it-was-given []
  "A tensor for torch tensors, a NumPy array for NumPy arrays, read in place (the parameter is
  a pointer to the caller's memory)."
  (torch.manual-seed 0)
  (setv model (Net)
        images (torch.randn 5 1 28 28)
        predict (hytorch.stage log-probabilities model images))
  (assert (in "(call" predict.ir))
  (for [batch [images (torch.randn 5 1 28 28) (.numpy (torch.randn 5 1 28 28))]]
    (setv out (predict model batch)
          torch-in (isinstance batch torch.Tensor))
    (assert (isinstance out (if torch-in torch.Tensor np.ndarray)))
    (assert (= (tuple out.shape) #(5 10)))
    (with [_ (torch.no-grad)]
      (assert (torch.allclose (torch.as-tensor out) (model (torch.as-tensor batch)) :atol 1e-5)))))


(defn test-an-int64-tensor-result []
  (torch.manual-seed 0)
  (setv model (Net)
        images (torch.randn 8 1 28 28)
        klass (torch.zeros 8 :dtype torch.int64)
        count (hytorch.stage predicted-class-count model images klass)
        out (count model images klass))
  (assert (= out.dtype torch.int64))
  (with [_ (torch.no-grad)]
    (assert (= (int out) (.item (.sum (.eq (.argmax (model images) :dim 1) klass)))))))


(defstaged halve [model images]
  (// (model images) 2.0))


(defn test-unsupported-tensor-operators-name-the-form []
  (setv model (Net) images (torch.randn 2 1 28 28))
  (with [e (pytest.raises hytorch.StagingError)]
    (hytorch.lms-compile halve model images))
  (assert (in "`//` and `%` of a staged tensor is not supported" (str e.value)))
  (assert (in "test_compiled_models.hy:52:3" e.value.where)))


(defn test-a-tensor-of-another-shape-names-the-argument []
  (setv model (Net)
        predict (hytorch.stage log-probabilities model (torch.randn 5 1 28 28)))
  (with [e (pytest.raises ValueError)]
    (predict model (torch.randn 4 1 28 28)))
  (assert (in "argument 2 has shape [4, 1, 28, 28]; the program was staged with [5, 1, 28, 28]"
              (str e.value)))
  (with [e (pytest.raises TypeError)]
    (predict model (torch.zeros 5 1 28 28 :dtype torch.float64)))
  (assert (in "argument 2 holds float64; the program was staged with float32" (str e.value)))
  (with [e (pytest.raises TypeError)]
    (predict model [1 2 3]))
  (assert (in "argument 2 must be a tensor or NumPy array of shape [5, 1, 28, 28] (float32)"
              (str e.value))))


(defn test-a-model-changed-between-calls-is-read-again []
  "The weights cross into the compiled program once and again after any change: in place,
  by assigning .data, by load_state_dict, a parameter or a layer replaced, or another model
  of the same shape."
  (torch.manual-seed 0)
  (setv model (Net)
        images (torch.randn 3 1 28 28)
        predict (hytorch.stage log-probabilities model images))
  (defn check [m]
    (with [_ (torch.no-grad)]
      (assert (torch.allclose (predict m images) (m images) :atol 1e-5))))
  (check model)
  (check model)
  (with [_ (torch.no-grad)] (.add- model.fc1.weight 0.5))
  (check model)
  (setv model.fc2.bias.data (torch.randn 10))
  (check model)
  (setv other (Net))
  (.load-state-dict model (.state-dict other))
  (check model)
  (setv model.fc1.weight (torch.nn.Parameter (torch.randn 50 784)))
  (check model)
  (setv model.fc2 (torch.nn.Linear 50 10))
  (check model)
  (check (Net)))
