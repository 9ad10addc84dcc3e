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


(defn test-a-compiled-model-returns-its-output-as-an-array []
  (torch.manual-seed 0)
  (setv model (Net)
        images (torch.randn 5 1 28 28)
        predict (hytorch.stage log-probabilities model images))
  (for [batch [images (torch.randn 5 1 28 28)]]
    (setv out (predict model batch))
    (assert (isinstance out np.ndarray))
    (assert (= out.shape #(5 10)))
    (with [_ (torch.no-grad)]
      (assert (np.allclose out (.numpy (model batch)) :atol 1e-5)))))


(defn test-an-int64-tensor-result []
  (torch.manual-seed 0)
  (setv model (Net)
        images (torch.randn 8 1 28 28)
        klass (torch.zeros 8 :dtype torch.int64)
        count (hytorch.stage predicted-class-count model images klass)
        out (count model images klass))
  (assert (= out.dtype np.int64))
  (with [_ (torch.no-grad)]
    (assert (= (int out) (.item (.sum (.eq (.argmax (model images) :dim 1) klass)))))))


(defstaged halve [model images]
  (/ (model images) 2.0))


(defn test-unsupported-tensor-operators-name-the-form []
  (setv model (Net) images (torch.randn 2 1 28 28))
  (with [e (pytest.raises hytorch.StagingError)]
    (hytorch.lms-compile halve model images))
  (assert (in "division (`/`) of a staged tensor is not supported" (str e.value)))
  (assert (in "test_compiled_models.hy:48:3" e.value.where)))


(defn test-a-tensor-of-another-shape-names-the-argument []
  (setv model (Net)
        predict (hytorch.stage log-probabilities model (torch.randn 5 1 28 28)))
  (with [e (pytest.raises ValueError)]
    (predict model (torch.randn 4 1 28 28)))
  (assert (in "argument 2 has 3136 elements; the program was staged with 3920 ([5, 1, 28, 28])"
              (str e.value))))
