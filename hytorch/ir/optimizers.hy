"The torch optimizers compiled code runs, each declared once, in `OPTIMIZERS` (as
hytorch/ir/ops.hy declares the tensor ops).

An `Optimizer` entry is everything about the IR node `(NAME (SETTINGS...) (PARAMS...))`: the
torch class it stands for, its hyperparameters (torch's names and defaults, in the order of
the node's SETTINGS), the options it accepts or refuses, the state it keeps per parameter
under torch's names in `optimizer.state[p]`, and the kernel call of its step. The front end
(hytorch/lift.py) lifts a torch optimizer with it, backend/c_train.hy renders its state and
step, and hytorch/torch_bridge.py copies its state between torch and the compiled program.

  (.settings-of (get OPTIMIZERS \"SGD\") [0.01 0.5])
  ; => {\"lr\" 0.01 \"momentum\" 0.5 \"dampening\" 0.0 \"weight_decay\" 0.0 \"nesterov\" False}
  (lfor b (.buffers-for (get OPTIMIZERS \"Adam\") {\"amsgrad\" False}) b.key)
  ; => [\"exp_avg\" \"exp_avg_sq\"]

A step's kernel call is a Hy form whose words are: `param` (the parameter's storage), `grad`
(its gradient), `numel`, `step` (the step count, already counting this step), `first_step`
(1 until the parameter's first step), a buffer's torch name (its storage, NULL when absent),
a setting's name (its value as a C constant of the setting's `ctype`)."

(import hytorch.ir.ops [plain]
        hytorch.ir.syntax [Sym])


(defclass Setting []
  "One hyperparameter: `name` in the IR and kernel call, read from the parameter group's
  `torch` key (element `index` of it, for betas), `default` as in torch's signature, `ctype`
  the C type the kernel takes (\"float\", \"double\" or \"bool\")."
  (defn __init__ [self name default ctype [torch None] [index None]]
    (setv self.name name self.default default self.ctype ctype
          self.torch (or torch name) self.index index)))


(defclass Buffer []
  "A per-parameter state tensor, shaped like the parameter, named `key` in torch's state;
  kept only when the setting `when` is true (always when None). It starts zeroed."
  (defn __init__ [self key [when None]]
    (setv self.key key self.when when)))


(defclass Optimizer []
  "One optimizer (see the module's docstring).

  name       the IR node's head
  torch      the dotted name of the torch class it stands for (that class exactly)
  settings   its Settings, in the order of the node's SETTINGS
  short      how many leading SETTINGS the node always lists: the rest only when one of them
             is not its default (snek-LMS's `(SGD (LR MOMENTUM))`)
  accepted   group options that change nothing compiled (foreach, fused, ...): any value
  fixed      group options HyTorch supports at one value only: {option value}
  buffers    its per-parameter state tensors
  count      torch's state key of the per-parameter step count (Adam's `step`), or None when
             it keeps none (SGD: the `first_step` flag tells its first step instead)
  kernel     the step's kernel call
  fusable    whether its step may be applied during the backward pass by the fused linear
             kernels (ht_linear_bwd_weight_sgd, ht_bias_bwd_sgd: SGD's rule only)"
  (defn __init__ [self name torch settings kernel
                  [short None] [accepted #()] [fixed None] [buffers #()] [count None]
                  [fusable False]]
    (setv self.name name self.torch torch self.settings (list settings)
          self.kernel (plain kernel) self.short (if (is short None) (len settings) short)
          self.accepted (tuple accepted) self.fixed (or fixed {}) self.buffers (list buffers)
          self.count count self.fusable fusable))

  (defn defaults [self]
    "{setting name: torch's default}"
    (dfor s self.settings s.name s.default))

  (defn settings-of [self values]
    "The node's SETTINGS list as {name value}, omitted trailing ones at their defaults; a
    ValueError when it is not such a list."
    (when (not (<= self.short (len values) (len self.settings)))
      (raise (ValueError (+ f"{self.name} takes ({(.join " " (gfor s self.settings s.name))}), "
                            (if (< self.short (len self.settings))
                              f"the last {(- (len self.settings) self.short)} optional, "
                              "")
                            f"not {(len values)} setting(s)"))))
    (for [v values]
      (when (not (isinstance v #(int float)))   ; a bool is an int
        (raise (ValueError f"{self.name}'s settings are numbers and booleans, not {v !r}"))))
    (dfor [i s] (enumerate self.settings)
          s.name (if (< i (len values)) (get values i) s.default)))

  (defn node-settings [self values]
    "The node's SETTINGS for {name value}: every setting, or the first `short` when the rest
    are defaults. (.node-settings (get OPTIMIZERS \"SGD\") {... \"momentum\" 0.5}) => [0.01 0.5]"
    (setv listed (lfor s self.settings (get values s.name))
          rest (cut self.settings self.short None))
    (if (all (gfor s rest (= (get values s.name) s.default)))
      (cut listed self.short)
      listed))

  (defn buffers-for [self values]
    "The buffers kept with settings {name value}."
    (lfor b self.buffers :if (or (is b.when None) (get values b.when)) b)))


(defn declare [#* optimizers]
  (dfor o optimizers o.name o))


(setv ADAM-SETTINGS
      [(Setting "lr" 0.001 "double")
       (Setting "beta1" 0.9 "double" :torch "betas" :index 0)
       (Setting "beta2" 0.999 "double" :torch "betas" :index 1)
       (Setting "eps" 1e-08 "double")
       (Setting "weight_decay" 0.0 "double")
       (Setting "amsgrad" False "bool")
       (Setting "maximize" False "bool")
       (Setting "decoupled_weight_decay" False "bool")])

(setv ADAM-STEP '(ht_adam_step param grad exp_avg exp_avg_sq max_exp_avg_sq numel step
                               lr beta1 beta2 eps weight_decay decoupled_weight_decay amsgrad
                               maximize))

(defn adam-like [name torch settings]
  (Optimizer name torch settings ADAM-STEP
             :accepted #("foreach" "fused" "capturable" "differentiable")
             :buffers [(Buffer "exp_avg") (Buffer "exp_avg_sq")
                       (Buffer "max_exp_avg_sq" :when "amsgrad")]
             :count "step"))


(setv OPTIMIZERS
  (declare
    (Optimizer "SGD" "torch.optim.SGD"
               [(Setting "lr" 0.001 "float")
                (Setting "momentum" 0.0 "float")
                (Setting "dampening" 0.0 "float")
                (Setting "weight_decay" 0.0 "float")
                (Setting "nesterov" False "bool")]
               '(ht_sgd_step param grad momentum_buffer numel lr momentum dampening
                             weight_decay nesterov first_step)
               :short 2
               :accepted #("foreach" "fused")
               :fixed {"maximize" False "differentiable" False}
               :buffers [(Buffer "momentum_buffer" :when "momentum")]
               :fusable True)
    (adam-like "Adam" "torch.optim.Adam" ADAM-SETTINGS)
    ;; AdamW is Adam with decoupled weight decay (torch's AdamW sets it) and another default
    (adam-like "AdamW" "torch.optim.AdamW"
               (lfor s ADAM-SETTINGS
                     (cond (= s.name "weight_decay") (Setting "weight_decay" 0.01 "double")
                           (= s.name "decoupled_weight_decay")
                             (Setting "decoupled_weight_decay" True "bool")
                           True s)))))


(defn optimizer-node? [node]
  "Whether the IR `node` is an optimizer's, `(NAME (SETTINGS...))` or `(NAME (SETTINGS...)
  (PARAMS...))` with NAME in OPTIMIZERS: (optimizer-node? [(Sym \"SGD\") [0.1 0.0]]) => True"
  (and (isinstance node list) (<= 2 (len node) 3)
       (isinstance (get node 0) Sym) (in (get node 0) OPTIMIZERS)
       (all (gfor part (cut node 1 None) (isinstance part list)))))
