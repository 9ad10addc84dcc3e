"""Compiled functions called from several Python threads at once: the calls take turns (cffi
lets go of the GIL while C runs, and a program's scratch memory, the runtime a cached library's
programs share and the Ctrl-C handler are one each), so each gets what a call alone gets, and
Ctrl-C still reaches Python afterwards."""
import subprocess
import sys
import textwrap
import threading

import numpy as np
import torch.nn.functional as F

import hytorch


def _softmaxes(x):
    return F.softmax(F.relu(x * 2.0) + 1.0, dim=-1) * 3.0 - F.log_softmax(x, dim=-1)


def _calls_in_threads(functions_and_inputs, calls):
    """Call each (f, x) `calls` times in a thread of its own; the results that differ from f(x)
    called alone, per thread."""
    expected = [f(x).copy() for f, x in functions_and_inputs]
    wrong = [0] * len(functions_and_inputs)

    def work(k):
        f, x = functions_and_inputs[k]
        for _ in range(calls):
            if not np.array_equal(f(x), expected[k]):
                wrong[k] += 1

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(functions_and_inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return wrong


def test_one_function_called_from_two_threads_gives_each_its_own_result():
    f = hytorch.stage(_softmaxes, hytorch.TensorType([64, 512]))
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((64, 512)).astype(np.float32) for _ in range(2)]
    assert _calls_in_threads([(f, x) for x in xs], 100) == [0, 0]


def test_two_programs_of_one_library_called_from_two_threads():
    f = hytorch.stage(_softmaxes, hytorch.TensorType([64, 512]))
    g = hytorch.stage(_softmaxes, hytorch.TensorType([64, 512]))
    assert f.so_path == g.so_path   # one library, so one runtime, for both
    rng = np.random.default_rng(1)
    xs = [rng.standard_normal((64, 512)).astype(np.float32) for _ in range(2)]
    assert _calls_in_threads([(f, xs[0]), (g, xs[1])], 100) == [0, 0]


def test_each_call_runs_at_the_thread_count_set_when_it_is_made():
    # Two programs of one library share its runtime: the setting made for one call must not
    # be taken for the other's.
    f = hytorch.stage(lambda x: x @ x, hytorch.TensorType([64, 64]))
    g = hytorch.stage(lambda x: x @ x, hytorch.TensorType([64, 64]))
    x = np.ones((64, 64), np.float32)
    before = hytorch.get_num_threads()
    try:
        for threads, h in ((2, f), (1, g), (2, f)):
            hytorch.set_num_threads(threads)
            h(x)
            assert f._lib.ht_get_num_threads() == threads
    finally:
        hytorch.set_num_threads(before)


def test_ctrl_c_still_reaches_python_after_calls_from_two_threads():
    script = textwrap.dedent("""
        import os, signal, threading, time
        import numpy as np
        import hytorch
        signal.signal(signal.SIGINT, signal.default_int_handler)   # (not ignored, as inherited)
        f = hytorch.stage(lambda x: (x @ x).sum(), hytorch.TensorType([48, 48]))
        g = hytorch.stage(lambda x: (x @ x).sum(), hytorch.TensorType([48, 48]))
        x = np.ones((48, 48), np.float32)
        def loop(h):
            for _ in range(5000):
                h(x)
        threads = [threading.Thread(target=loop, args=(h,)) for h in (f, g)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(2.0)
            print("lost")
        except KeyboardInterrupt:
            print("interrupted")
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=300)
    assert out.stdout.strip() == "interrupted", out.stderr


def test_ctrl_c_during_another_threads_call_reaches_the_main_thread():
    # Python raises KeyboardInterrupt in the main thread; a call running in another thread
    # once took the signal for itself (its Ctrl-C handler is process-wide) and the main
    # thread never saw it.
    script = textwrap.dedent("""
        import os, signal, threading, time
        import numpy as np
        import hytorch
        signal.signal(signal.SIGINT, signal.default_int_handler)   # (not ignored, as inherited)
        f = hytorch.stage(lambda x: (x @ x).sum(), hytorch.TensorType([2500, 2500]))
        x = np.full((2500, 2500), 0.001, np.float32)
        expected = float(f(x))
        result = []
        def work():
            try:
                result.append(float(f(x)) == expected)
            except BaseException as e:
                result.append(type(e).__name__)
        t = threading.Thread(target=work)
        t.start()
        time.sleep(0.1)
        try:
            os.kill(os.getpid(), signal.SIGINT)
            t.join()
            print("lost", result)
        except KeyboardInterrupt:
            t.join()
            print("main", result)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=300)
    assert out.stdout.strip() == "main [True]", (out.stdout, out.stderr)
