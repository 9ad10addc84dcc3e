"""The C runtime's sources (installed as hytorch.c_runtime): compiled into every model."""
import pathlib

SOURCE_DIR = pathlib.Path(__file__).resolve().parent
