"Staged code keeps Python's meaning, or says why it cannot (found in review)."

(require hytorch [defstaged])
(import hytorch
        hytorch.builder
        pytest)

(defn same [f types #* argsets]
  "f compiled gives what f gives eagerly, for each argument list: the same type and repr
  (False is not 0, -0.0 is not 0.0, nan is nan)."
  (setv compiled (hytorch.stage f #* types))
  (for [args argsets]
    (setv eager (f #* args) got (compiled #* args))
    (assert (and (is (type got) (type eager)) (= (repr got) (repr eager)))
            f"{f.__name__}{args}: compiled {got !r}, eager {eager !r}")))

(defstaged shadowing-let [n]
  (setv x n)
  (let [x 10] (setv q x))
  (+ x q))

(defstaged let-in-a-branch [n]
  (setv x 1)
  (when (> n 0)
    (let [x 100] (setv y x)))
  x)

(defstaged let-in-a-loop [n]
  (setv total 0)
  (for [i (range n)]
    (let [sq (* i i)]
      (setv total (+ total sq))))
  total)

(defn test-let-keeps-its-own-scope []
  (same shadowing-let [int] [1] [5])
  (same let-in-a-branch [int] [1] [-1])
  (same let-in-a-loop [int] [0] [4]))

(defstaged either [a b] (or a b))
(defstaged both [a b] (and a b))

(defn test-and-or-give-an-operand []
  (same either [int int] [3 4] [0 4] [0 0])
  (same both [int int] [3 4] [0 4] [3 0])
  (same either [float float] [2.5 0.5] [0.0 0.5]))

(defstaged set-in-both-branches [n]
  (if (> n 0) (setv y 1) (setv y 25))
  (* y 2))

(defn test-a-variable-assigned-in-both-branches []
  (same set-in-both-branches [int] [1] [-1]))

(defstaged value-of-when [n]
  (setv y (when (> n 0) 5))
  (+ y 1))

(defn test-the-value-of-an-if-with-a-none-branch []
  (with [e (pytest.raises hytorch.StagingError)]
    (hytorch.lms-compile value-of-when))
  (assert (in "has no value on one of its branches" (str e.value)))
  (assert (.endswith e.value.where "test_staging_semantics.hy:57:3")))

(defstaged as-a-string [n]
  (print (+ "n is " (str n))))

(defn test-str-of-a-staged-value []
  (with [e (pytest.raises hytorch.StagingError)]
    (hytorch.lms-compile as-a-string))
  (assert (in "as a Python string" (str e.value))))

(defclass Scaler []
  (defn __init__ [self k] (setv self.k k))
  (defstaged scale [self x]
    (if (> x 0) (* x self.k) (- x self.k))))

(defn test-defstaged-methods []
  (setv s (Scaler 3))
  (same (fn [n] (.scale s n)) [int] [2] [-2]))

(defstaged store-into-a-dict [n]
  (setv d {"k" 0})
  (for [i (range n)] (setv (get d "k") i))
  (get d "k"))

(defstaged keep-in-a-list [n]
  (setv kept [])
  (for [i (range n)] (.append kept (* i 2)))
  (+ (get kept 0) 1))

(defn test-python-objects-changed-under-staged-control-flow []
  (with [e (pytest.raises hytorch.StagingError)]
    (hytorch.lms-compile store-into-a-dict))
  (assert (in "changes the Python object once, while staging" (str e.value)))
  (assert (.endswith e.value.where "test_staging_semantics.hy:84:28"))
  (with [e (pytest.raises hytorch.StagingError)]
    (hytorch.lms-compile keep-in-a-list))
  (assert (in "used after that block ended" (str e.value)))
  (assert (.endswith e.value.where "test_staging_semantics.hy:90:3")))

(defstaged powers [n] (+ (** n 3) (abs (- n 5))))

(defn test-power-by-a-constant-and-abs []
  (same powers [int] [2] [9] [-4]))

(defstaged huge-constant [n] (+ n 100000000000000000000000))

(defstaged huger-than-python-prints [n] (+ n (** 10 5000)))

(defn test-an-integer-constant-beyond-64-bits []
  (with [e (pytest.raises hytorch.StagingError)]
    (hytorch.lms-compile huge-constant))
  (assert (in "does not fit in the 64 bits" (str e.value)))
  ;; str() of an int over 4300 digits is a ValueError: the message must not need it
  (with [e (pytest.raises hytorch.StagingError)]
    (hytorch.lms-compile huger-than-python-prints))
  (assert (in "~10**5000 (16610 bits) does not fit in the 64 bits" (str e.value))))

(defstaged nan-accumulate [n acc] (if (<= n 0) acc (nan-accumulate (- n 1) (- acc))))
(defstaged start-from-nan [n] (nan-accumulate n (float "nan")))
(defstaged sign-of-zero-accumulate [n acc] (if (<= n 0) acc (sign-of-zero-accumulate (- n 1) acc)))
(defstaged start-from-minus-zero [n] (+ (sign-of-zero-accumulate n -0.0) (sign-of-zero-accumulate n 0.0)))

(defn test-recursion-on-a-nan-or-signed-zero-constant-is-found []
  "A constant argument is part of a call's identity: NaN repeats (NaN != NaN must not hide the
  recursion), -0.0 and 0.0 are different calls."
  (same start-from-nan [int] [0] [3])
  (same start-from-minus-zero [int] [0] [2]))

(defstaged pass-bool [n b] (if (<= n 0) b (pass-bool (- n 1) (not n))))
(defstaged start-pass-bool [n] (pass-bool n False))

(defn test-a-bool-through-a-staged-recursion-stays-a-bool []
  (same start-pass-bool [int] [0] [1] [2] [5]))

(defstaged zero-minus [n] (- 0.0 n))

(defn test-zero-minus-an-int-zero-is-plus-zero []
  "gcc folds `0.0 - (double)i` into `-(double)i` (-0.0 for i = 0) unless the constant is hidden."
  (same zero-minus [int] [0] [3] [-3])
  (same zero-minus [bool] [False] [True])
  (same zero-minus [float] [0.0] [-0.0] [2.5]))

(defn test-int64-min-floor-division-by-minus-one-wraps []
  (setv div (hytorch.stage (fn [a b] (// a b)) int int)
        mod (hytorch.stage (fn [a b] (% a b)) int int))
  (assert (= (div (- (** 2 63)) -1) (- (** 2 63))) "wraps like every 64-bit overflow, no trap")
  (assert (= (mod (- (** 2 63)) -1) 0)))

(defstaged deep-inline [x k]
  (if (= k 0) x (deep-inline (+ x 1) (- k 1))))

(defn test-inlining-deeper-than-pythons-limit []
  (with [e (pytest.raises hytorch.StagingError)]
    (hytorch.lms-compile (fn [x] (deep-inline x 5000))))
  (assert (in "deeper than Python's recursion limit" (str e.value))))

(defn test-ir-nested-deeply []
  (setv text "x0")
  (for [i (range 300)]
    (setv text f"(let y{i} (if in (begin {text}) (begin 0)) y{i})"))
  (setv f (hytorch.compile-ir f"(def f (in) (begin (begin (let x0 1 {text}))))"))
  (assert (= [(f 1) (f 0)] [1 0])))

(defn test-ir-nested-too-deeply []
  (setv text "x0")
  (for [i (range 2000)]
    (setv text f"(let y{i} (if in (begin {text}) (begin 0)) y{i})"))
  (with [e (pytest.raises hytorch.IRError)]
    (hytorch.compile-ir f"(def f (in) (begin (begin (let x0 1 {text}))))"))
  (assert (in "nested too deeply" (str e.value))))

(defstaged percent [x]
  (print (.format "[{:10.1%}] [{:.0%}]" x x)))

(defn test-percent-width-counts-the-sign [capfd]
  (.readouterr capfd)
  ((hytorch.stage percent float) 0.25)
  (assert (= (. (.readouterr capfd) out) (+ (.format "[{:10.1%}] [{:.0%}]" 0.25 0.25) "\n"))))

(defstaged unrolled-sum [n k]
  (setv total n)
  (for [i (range k)] (setv total (+ total i)))
  total)

(defn test-an-unrolling-that-would-not-end-is-stopped [monkeypatch]
  (monkeypatch.setattr hytorch.builder "MAX_LETS" 1000)
  (assert (= ((hytorch.stage (fn [n] (unrolled-sum n 500))) 1) (unrolled-sum 1 500)))
  (with [e (pytest.raises hytorch.StagingError)]
    (hytorch.lms-compile (fn [n] (unrolled-sum n 5000))))
  (assert (in "grew past 1000 lets" (str e.value)))
  (assert (in "test_staging_semantics.hy" e.value.where)))


(defstaged countdown-from [n k]
  "Recursion that ends only at run time: a staged function."
  (if (<= n 0) k (countdown-from (- n 1) (+ k 2))))

(defstaged steps-under-a-staged-call [n]
  ;; The while test is staged once to see whether it is staged, then again as the loop's
  ;; condition: the staged function first met there must be defined in the program.
  (setv i 0)
  (while (and (< i 3) (< i (countdown-from (if (< n 12) n 12) n)))
    (setv i (+ i 1)))
  i)

(defn test-a-staged-function-first-called-in-a-while-test []
  (same steps-under-a-staged-call [int] [0] [1] [5] [-3]))
