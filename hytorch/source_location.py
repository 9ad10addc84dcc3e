"""Where in the user's `.hy` source the staging run currently is, for error messages."""
import os
import sys

_OWN_DIRS = tuple(
    os.path.dirname(os.path.abspath(p)) + os.sep
    for p in (__file__,
              os.path.join(os.path.dirname(__file__), "..", "macros", "x"),
              os.path.join(os.path.dirname(__file__), "..", "backend", "x"))
)


def _is_user_hy(filename):
    return filename.endswith(".hy") and not os.path.abspath(filename).startswith(_OWN_DIRS)


def frame_location(frame, lasti=None):
    """'file.hy:LINE:COL' of the instruction `frame` is executing, or of instruction offset
    `lasti` in it (COL as Hy counts, from 1)."""
    line, col = frame.f_lineno, None
    positions = list(frame.f_code.co_positions())
    index = (frame.f_lasti if lasti is None else lasti) // 2
    if 0 <= index < len(positions) and positions[index][0] is not None:
        line, _, col, _ = positions[index]
    return f"{frame.f_code.co_filename}:{line}" + (f":{col}" if col is not None else "")


def user_location():
    """Location of the innermost frame running user `.hy` code, or None outside any.

    Used when an error is raised from inside HyTorch (an operator on a staged value, a shape
    check in a torch function) so the message points at the user's form, not at HyTorch.
    """
    frame = sys._getframe(1)
    while frame is not None:
        if _is_user_hy(frame.f_code.co_filename):
            return frame_location(frame)
        frame = frame.f_back
    return None


def traceback_location(tb):
    """Location of the innermost user `.hy` code in traceback `tb` (where an exception was
    raised), or None."""
    where = None
    while tb is not None:
        if _is_user_hy(tb.tb_frame.f_code.co_filename):
            where = frame_location(tb.tb_frame, tb.tb_lasti)
        tb = tb.tb_next
    return where
