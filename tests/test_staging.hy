"Staging Hy functions to IR and running the compiled C (issue: staging core)."

(require hytorch [defstaged])
(import hytorch
        hytorch.builder
        pytest)

(defstaged power [b x]
  (if (= x 0) 1 (* b (power b (- x 1)))))

(defstaged power3 [n] (power n 3))

(defstaged loop1 [n]
  (setv x 0)
  (while (< x n) (setv x (+ x 1)))
  x)

(defn test-power3-ir-and-result []
  (assert (= (str (hytorch.lms-compile power3))
             "(def power3 (in) (begin (begin (let x0 (* in 1) (let x1 (* in x0) (let x2 (* in x1) x2))))))"))
  (assert (= ((hytorch.stage power3) 3) 27))
  (assert (= (power3 3) 27) "called with an ordinary value it is the plain function"))

(defn test-loop1-ir-and-result []
  (assert (= (str (hytorch.lms-compile loop1))
             (+ "(def loop1 (in) (begin (begin (let x0 new (let x1 (set x0 0) (let x2 (while "
                "(begin (let x2 (get x0) (let x3 (< x2 in) x3))) (begin (let x2 (get x0) (let x3 "
                "(+ x2 1) (let x4 (set x0 x3) None))))) (let x3 (get x0) x3)))))))")))
  (assert (= ((hytorch.stage loop1) 5) 5)))

(defstaged clamp-double [n]
  (if (> n 10) (* n 2) (- n 1)))

(defn test-staged-if-with-values-in-both-branches []
  (setv ir (str (hytorch.lms-compile clamp-double)))
  (assert (in "(if x0 (begin (let x1 (* in 2) x1)) (begin (let x1 (- in 1) x1)))" ir))
  (setv f (hytorch.stage clamp-double))
  (for [n [-3 0 10 11 50]]
    (assert (= (f n) (clamp-double n)))))

(defstaged pick [n flag]
  (if flag (+ n 1) (- n 1)))

(defn test-generation-time-if-is-not-emitted []
  (setv ir (str (hytorch.lms-compile (fn [n] (pick n True)))))
  (assert (not-in "(if" ir))
  (assert (in "(+ in 1)" ir))
  (assert (not-in "(- in 1)" ir)))

(defstaged report [n]
  (setv half (/ n 2))
  (print "start")
  (print (.format "n={} half={} pct={:.1f}% of {}" n half (* half 10) "total"))
  (print n half)
  n)

(defn test-printf [capfd]
  (setv ir (str (hytorch.lms-compile report)))
  (assert (in "(print \"start\")" ir))
  (assert (in "(printf (\"n={} half={} pct={:.1f}% of total\" in x0 x2))" ir))
  (setv f (hytorch.stage report))
  (.readouterr capfd)
  (f 7)
  (assert (= (. (.readouterr capfd) out) "start\nn=7 half=3.5 pct=35.0% of total\n7 3.5\n"))
  (report 7)
  (assert (= (. (.readouterr capfd) out) "start\nn=7 half=3.5 pct=35.0% of total\n7 3.5\n")))

(defstaged triangle-sum [n]
  (setv total 0 i 0)
  (while (< i n)
    (setv j 0)
    (while (<= j i)
      (setv total (+ total (* i j)))
      (setv j (+ j 1)))
    (setv i (+ i 1)))
  total)

(defn test-nested-staged-loops []
  (setv ir (str (hytorch.lms-compile triangle-sum)))
  (assert (= (.count ir "(while") 2))
  (setv f (hytorch.stage triangle-sum))
  (for [n [0 1 5 13]]
    (assert (= (f n) (triangle-sum n)))))

(defstaged floats [x]
  (setv acc 0.0 k 0)
  (for [i (range 4)]
    (setv acc (+ acc (/ x (+ i 1)))))
  (- (* acc 2.5) (// x 0.75) (% x 0.7)))

(defn test-float-arithmetic []
  (setv f (hytorch.stage floats float))
  (for [x [0.0 1.5 -2.25 1e3]]
    (assert (= (f x) (floats x)) f"x={x}"))
  (assert (= (f 3) (floats 3.0)) "an int argument is accepted for a float parameter"))

(defstaged int-division [a b]
  [(// a b) (% a b)])

(defn test-python-floor-division-and-modulo []
  (setv div (hytorch.stage (fn [a b] (// a b)) int int)
        mod (hytorch.stage (fn [a b] (% a b)) int int))
  (for [[a b] [[7 2] [-7 2] [7 -2] [-7 -2] [0 3]]]
    (assert (= (div a b) (// a b)))
    (assert (= (mod a b) (% a b))))
  (with [e (pytest.raises ZeroDivisionError)]
    (div 1 0))
  (assert (in "division by zero" (str e.value))))

(defstaged collatz-steps [n]
  (setv steps 0)
  (while (!= n 1)
    (setv n (if (= (% n 2) 0) (// n 2) (+ (* 3 n) 1)))
    (setv steps (+ steps 1)))
  steps)

(defn test-assigning-a-parameter-under-staged-control []
  (setv f (hytorch.stage collatz-steps))
  (assert (= (f 27) (collatz-steps 27) 111)))

(defmacro twice [x] `(* 2 ~x))

(defstaged threaded [n]
  (require hyrule [-> ->>])
  (when (> n 0)
    (print "positive"))
  (-> n (+ 1) (twice) (->> (- 100))))

(defn test-macros-work-inside []
  (setv f (hytorch.stage threaded))
  (assert (= (f 4) (threaded 4) 90))
  (assert (in "(if" (str (hytorch.lms-compile threaded)))))

(defstaged sum-list [n]
  (setv total n)
  (for [k [1 2 3]]
    (setv total (+ total k)))
  total)

(defn test-for-over-a-python-list-unrolls []
  (assert (= (str (hytorch.lms-compile sum-list))
             "(def sum_list (in) (begin (begin (let x0 (+ in 1) (let x1 (+ x0 2) (let x2 (+ x1 3) x2))))))")))

(defstaged sum-range [n]
  (setv total 0)
  (for [i (range 1 n)]
    (+= total i))
  total)

(defn test-for-over-a-staged-range []
  (setv f (hytorch.stage sum-range))
  (assert (= (f 10) 45))
  (assert (= (f 0) 0)))

(defstaged both [a b]
  (if (and (> a 0) (or (< b 0) (not (= a b)))) 1 0))

(defn test-staged-and-or-not []
  (setv f (hytorch.stage both int int))
  (for [[a b] [[1 -1] [1 1] [0 5] [2 3] [-1 -1]]]
    (assert (= (f a b) (both a b)))))

(defstaged factorial [n]
  (if (<= n 1) 1 (* n (factorial (- n 1)))))

(defn test-recursion-that-ends-at-generation-time-inlines []
  (assert (= ((hytorch.stage (fn [x] (* x (factorial 5)))) 2) 240)))

(defn test-recursion-on-a-staged-value-becomes-a-staged-function []
  (setv ir (str (hytorch.lms-compile factorial)))
  (assert (.startswith ir "(def factorial (in) (begin (begin (let factorial0 (def factorial0 (in) (begin (begin (let x0 (<= in 1)"))
  (assert (= (.count ir "(call factorial0 (x1))") 2) "the inlined first level and the def both call it")
  (setv f (hytorch.stage factorial))
  (for [n [-3 0 1 2 10 20]]
    (assert (= (f n) (factorial n))))
  (with [e (pytest.raises hytorch.ExecutionError)]
    (f 1000000))
  (assert (in "factorial0 recursed more than 20000 calls deep" (str e.value)))
  (assert (= (f 5) 120) "the program is usable after the error")
  (assert (= ((hytorch.compile-ir ir) 6) 720) "its printed IR compiles too"))

(defstaged halve-until-small [x]
  (if (< x 1.0) x (halve-until-small (/ x 2))))

(defn test-staged-function-result-kind-comes-from-its-body []
  (setv f (hytorch.stage halve-until-small float))
  (for [x [0.5 3.0 1000.0]]
    (assert (= (f x) (halve-until-small x)))))

(defstaged is-even [n]
  (if (= n 0) True (is-odd (- n 1))))

(defstaged is-odd [n]
  (if (= n 0) False (is-even (- n 1))))

(defn test-mutually-recursive-staged-functions []
  (setv even (hytorch.stage is-even))
  (assert (in "(call is_even0 (x3))" even.ir) "is-odd inlines into the staged is-even")
  (for [n [0 1 7 10 101]]
    (assert (is (even n) (is-even n)))))

(defn test-numbering-restarts-and-eager-calls-do-not-disturb-it []
  (setv first (str (hytorch.lms-compile loop1)))
  (loop1 3)
  (power3 2)
  (assert (= (str (hytorch.lms-compile loop1)) first))
  (assert (is (hytorch.builder.current) None)))

(defn test-staged-source-shows-the-rewrite []
  (setv f (hytorch.stage loop1))
  (assert (in "def loop1(n):" f.staged-source))
  (assert (in "_hyt.stage_while(" f.staged-source))
  (assert (in "(while (< x n)" loop1.original-source)))

(defstaged classify [n]
  (cond (< n 0) -1
        (= n 0) 0
        (< n 10) 1
        True 2))

(defn test-staged-cond []
  (setv f (hytorch.stage classify))
  (assert (= (.count (str (hytorch.lms-compile classify)) "(if") 3))
  (for [n [-5 0 3 10 99]]
    (assert (= (f n) (classify n)))))
