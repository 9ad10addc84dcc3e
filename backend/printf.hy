"Python `str.format` strings, as used by the IR's `printf`, translated to C printf pieces.

  (format-pieces \"Loss: {:.6f} at {}\" [\"float\" \"int\"])
  ; => [[\"text\" \"Loss: \"] [\"float\" \"%.6f\" 0] [\"text\" \" at \"] [\"int\" \"%lld\" 1]]

A piece is [\"text\" S], [\"int\" CFMT ARG], [\"float\" CFMT ARG] (a C conversion of the
argument cast to long long or double), [\"repr\" ARG] (Python's repr of a float) or
[\"bool\" ARG] (True/False). Unsupported specs raise ValueError with the reason."

(import re string [Formatter])

(setv _SPEC (re.compile #[[(?:(?P<fill>.)?(?P<align>[<>=^]))?(?P<sign>[-+ ])?(?P<alt>#)?(?P<zero>0)?(?P<width>\d+)?(?P<group>[,_])?(?:\.(?P<precision>\d+))?(?P<type>[a-zA-Z%])?\Z]]))


(defn _c-flags [m]
  (+ (if (= (.group m "align") "<") "-" "")
     (or (.group m "sign") "")
     (if (.group m "zero") "0" "")
     (or (.group m "width") "")))


(defn _field [spec kind index]
  "The piece for one `{:spec}` field whose argument has `kind`."
  (setv m (_SPEC.match spec))
  (when (not m)
    (raise (ValueError f"format spec {spec !r} is not valid")))
  (when (or (and (.group m "fill") (!= (.group m "fill") " "))
            (in (.group m "align") #("^" "="))
            (.group m "alt") (.group m "group"))
    (raise (ValueError f"format spec {spec !r} is not supported in staged code (fill, centring, '#', grouping)")))
  (setv type (or (.group m "type") "")
        precision (.group m "precision")
        prec (if precision f".{precision}" "")
        flags (_c-flags m))
  (when (and (= kind "bool") (= spec ""))
    (return ["bool" index]))
  (setv kind (if (= kind "bool") "int" kind))
  (cond
    (and (= kind "int") (in type #("" "d")))
      (do (when precision
            (raise (ValueError "precision is not allowed in an integer format spec")))
          ["int" f"%{flags}lld" index])
    (in type #("f" "F" "e" "E" "g" "G"))
      ["float" f"%{flags}{prec}{type}" index]
    (= type "%")
      (do (when (= (.group m "align") "<")
            (raise (ValueError f"format spec {spec !r}: left-aligned percentages are not supported")))
          ;; Python's width counts the % sign; C's applies to the number before it.
          (setv width (.group m "width")
                flags (+ (or (.group m "sign") "") (if (.group m "zero") "0" "")
                         (if width (str (- (int width) 1)) "")))
          ["percent" (+ "%" flags (if precision prec ".6") "f%%") index])
    (and (= kind "float") (= spec ""))
      ["repr" index]
    (= kind "float")
      (raise (ValueError f"format spec {spec !r} for a float: give a type such as {{:.4f}} or {{:e}}"))
    True
      (raise (ValueError f"format spec {spec !r} is not supported for an {kind}"))))


(defn format-pieces [fmt kinds]
  "Split `fmt` into printf pieces for arguments of the given kinds (\"int\" \"float\" \"bool\")."
  (setv pieces [] auto 0)
  (for [[text field spec conversion] (.parse (Formatter) fmt)]
    (when text
      (.append pieces ["text" text]))
    (when (is-not field None)
      (when (not-in conversion #(None "s" "r"))
        (raise (ValueError f"conversion !{conversion} is not supported in staged code")))
      (cond (= field "") (do (setv index auto) (+= auto 1))
            (.isdigit field) (setv index (int field))
            True (raise (ValueError f"named field {{{field}}} is not supported in staged code; use {{}}")))
      (when (>= index (len kinds))
        (raise (ValueError f"the format string needs more than {(len kinds)} argument(s)")))
      (when (in "{" (or spec ""))
        (raise (ValueError "nested fields in a format spec are not supported")))
      (.append pieces (_field (or spec "") (get kinds index) index))))
  pieces)


(defn c-string [s]
  "A C string literal for `s` (UTF-8 bytes, escaped)."
  (+ "\""
     (.join "" (gfor b (.encode s "utf-8")
                     (cond (= b 34) "\\\""
                           (= b 92) "\\\\"
                           (or (< b 32) (>= b 127)) f"\\{b :03o}"
                           True (chr b))))
     "\""))
