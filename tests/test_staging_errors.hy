"Bad input while staging: a StagingError naming the .hy file, line and column."

(require hytorch [defstaged])
(import hytorch
        os
        pytest torch)

(setv HERE (os.path.abspath __file__))

(defstaged generator [n]
  (yield n))

(defn test-unsupported-form-names-file-line-and-column []
  (with [e (pytest.raises hytorch.StagingError)]
    (hytorch.lms-compile generator))
  (assert (in "`yield`" (str e.value)))
  (assert (.endswith e.value.where "test_staging_errors.hy:11:3"))
  (assert (.startswith (str e.value) e.value.where)))

(defstaged early-exit [n]
  (setv i 0)
  (while (< i n)
    (when (> i 3)
      (break))
    (setv i (+ i 1)))
  i)

(defn test-break-in-a-staged-loop []
  (with [e (pytest.raises hytorch.StagingError)]
    (hytorch.lms-compile early-exit))
  (assert (in "`break`" (str e.value)))
  (assert (.endswith e.value.where "test_staging_errors.hy:24:7"))
  (assert (= (early-exit 10) 4) "eagerly it is an ordinary loop"))

(defstaged break-at-generation-time [n]
  (setv total n)
  (for [k [1 2 3 4]]
    (when (= k 3) (break))
    (setv total (+ total k)))
  total)

(defn test-break-in-a-generation-time-loop []
  (assert (= ((hytorch.stage break-at-generation-time) 10) 13)))

(defstaged truth-of-staged [n]
  (bool n))

(defn test-staged-value-as-python-bool []
  (with [e (pytest.raises hytorch.StagingError)]
    (hytorch.lms-compile truth-of-staged))
  (assert (in "truth value" (str e.value)))
  (assert (.endswith e.value.where "test_staging_errors.hy:46:3")))

(defstaged uses-loop-local [n]
  (setv i 0)
  (while (< i n)
    (setv last (* i 2))
    (setv i (+ i 1)))
  (+ last 1))

(defn test-variable-first-assigned-inside-a-staged-loop []
  (with [e (pytest.raises hytorch.StagingError)]
    (hytorch.lms-compile uses-loop-local))
  (assert (in "`last`" (str e.value)))
  (assert (in "assign it before" (str e.value))))

(defstaged returns-inside [n]
  (when (> n 0)
    (return 1))
  0)

(defn test-return-inside-staged-if []
  (with [e (pytest.raises hytorch.StagingError)]
    (hytorch.lms-compile returns-inside))
  (assert (in "`return`" (str e.value)))
  (assert (= (returns-inside 5) 1)))

(defstaged returns-at-generation-time [n flag]
  (when flag
    (return (* n 2)))
  n)

(defn test-return-inside-generation-time-if []
  (assert (= ((hytorch.stage (fn [n] (returns-at-generation-time n True))) 4) 8))
  (assert (= ((hytorch.stage (fn [n] (returns-at-generation-time n False))) 4) 4)))

(defstaged bad-format [x]
  (print (.format "{:d}" x)))

(defn test-format-spec-that-does-not-fit-the-value []
  (with [e (pytest.raises hytorch.StagingError)]
    (hytorch.lms-compile bad-format float))
  (assert (.endswith e.value.where "test_staging_errors.hy:88:10")))

(defstaged adds-a-string [n]
  (+ "n is " n))

(defstaged comprehension-over-a-staged-range [n]
  (sum (lfor i (range n) (* i i))))

(defstaged int-method [n]
  (.bit-length n))

(defn test-what-a-staged-scalar-cannot-do-names-the-form []
  (for [[f message where] [[adds-a-string "`+` of a staged int and str 'n is '" 96]
                           [comprehension-over-a-staged-range "only a `for` can go over it" 99]
                           [int-method "`.bit_length` of a staged int is not supported" 102]]]
    (with [e (pytest.raises hytorch.StagingError)]
      (hytorch.lms-compile f))
    (assert (in message (str e.value)))
    (assert (in f"test_staging_errors.hy:{where}:" e.value.where))))

(defstaged transposed [x] (.permute x 1 0))
(defstaged transposed-property [x] (. (.view x 1 2 3) T))
(defstaged as-float [x] (.double x))
(defstaged clamped [x] (.clamp x x))
(defstaged clamped-by-torch [x] (torch.clamp x))
(defstaged centered [x] (- x (.mean x 1)))
(defstaged float-equality [x] (.eq x x))

(defn test-what-a-staged-tensor-cannot-do-names-the-form []
  (setv x (torch.ones 2 3))
  (assert (torch.equal (centered (torch.ones 3 3)) (torch.zeros 3 3)) "eagerly, a square x broadcasts")
  (for [[f message where] [[transposed "`.permute` of a staged tensor" 113]
                           [transposed-property "`.T` of a staged tensor of more than 2 dims" 114]
                           [as-float "`.double` of a staged tensor" 115]
                           [clamped "clamp's min must be a number known at staging, got a tensor" 116]
                           [clamped-by-torch "clamp needs min or max" 117]
                           [centered "`-` of tensors of shapes [2, 3] and [2]: they do not broadcast" 118]
                           [float-equality "`==` of tensors [2, 3] float32" 119]]]
    (with [e (pytest.raises hytorch.StagingError)]
      (hytorch.lms-compile f x))
    (assert (in message (str e.value)))
    (assert (in f"test_staging_errors.hy:{where}:" e.value.where))))
