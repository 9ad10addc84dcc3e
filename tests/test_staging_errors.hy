"Bad input while staging: a StagingError naming the .hy file, line and column."

(require hytorch [defstaged])
(import hytorch
        os
        pytest)

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
