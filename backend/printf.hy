"C for printing: a format spec as the runtime's `ht_spec`, text as a C string literal that
means exactly its bytes (see c_runtime/ht_print.h). The format strings themselves are read by
hytorch/ir/format.hy."

(defn c-char [c]
  "A C character constant for one character (its code point, unless plain ASCII):
  (c-char \"*\") => \"'*'\", (c-char \"é\") => \"233\""
  (if (or (and (.isascii c) (.isalnum c)) (in c " *-_.=+#<>^")) f"'{c}'" (str (ord c))))


(defn c-spec [spec]
  "The C `ht_spec` of a Spec: (c-spec (parse-spec \">8.3f\" \"float\"))
  => \"(ht_spec){.fill = ' ', .align = '>', .sign = '-', .width = 8, .precision = 3, .type = 'f'}\""
  (+ "(ht_spec){"
     (.join ", " [f".fill = {(c-char spec.fill)}" f".align = '{spec.align}'" f".sign = '{spec.sign}'"
                  #* (if spec.alt [".alt = 1"] []) #* (if spec.z [".z = 1"] [])
                  f".width = {spec.width}" f".precision = {spec.precision}"
                  f".type = '{spec.type}'"])
     "}"))


(defn c-string [s]
  "A C string literal for `s` that means exactly its UTF-8 bytes, whatever they are: `?` is
  escaped (so no trigraph such as ??/ can form), and so is every byte outside printable ASCII
  (as three octal digits, so NUL and what follows it stay in the string):
  (c-string \"a?\\0\") is the C literal \"a\\?\\000\". A lone surrogate is the three bytes
  Python's \"surrogatepass\" gives it (which decode back to it the same way), so that two strings
  are equal in C when they are in Python."
  (+ "\""
     (.join "" (gfor b (.encode s "utf-8" "surrogatepass")
                     (cond (in b b"\"\\?") (+ "\\" (chr b))
                           (<= 32 b 126) (chr b)
                           True f"\\{b :03o}")))
     "\""))


(defn c-print-text [s]
  "The C statement printing `s` as Python's print writes it (NUL bytes included); ValueError
  when `s` holds a lone surrogate, which Python's print refuses too.

    (c-print-text \"hi\") => \"ht_print_text(\\\"hi\\\", 2);\""
  (try
    (setv size (len (.encode s "utf-8")))
    (except [UnicodeEncodeError]
      (raise (ValueError f"the string {s !r} cannot be printed: it holds a lone surrogate")
             :from None)))
  f"ht_print_text({(c-string s)}, {size});")
