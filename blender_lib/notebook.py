"""What every chapter calls: one setup (checks, seeds, threads, quiet logs, PNG figures) and excerpts.

:func:`setup_notebook` opens each chapter; :func:`show_source` shows a method's core from the
library as the reader's excerpt."""

from __future__ import annotations

import inspect
import logging
import textwrap
import os
import random
import warnings
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def quiet_libraries() -> None:
    """Silence progress bars and advisory warnings of the libraries (ours use tqdm where it matters)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        import transformers

        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    except ImportError:
        pass
    try:
        import datasets

        datasets.utils.logging.set_verbosity_error()
        datasets.disable_progress_bars()
    except ImportError:
        pass
    for name in ("httpx", "urllib3", "filelock", "absl"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="torch")


def check_parameters() -> dict[str, Any]:
    """In a kernel run by papermill, reject injected parameters the notebook does not declare or of the wrong type.

    Plain ``papermill in.ipynb out.ipynb -p beta oops`` only warns about an unknown name and never
    checks types. The kernel's input history holds the parameters cell and the cell papermill
    injected after it, so the check needs no notebook path: see
    :func:`blender_lib.runner.check_injected_parameters`. Outside IPython, or when nothing was
    injected, it does nothing. Raises :class:`blender_lib.runner.ParameterError`.
    """
    try:
        from IPython import get_ipython
    except ImportError:
        return {}
    shell = get_ipython()
    history = getattr(getattr(shell, "history_manager", None), "input_hist_raw", None)
    if shell is None or history is None:
        return {}
    from .runner import check_injected_parameters

    return check_injected_parameters(list(history), shell.user_ns)


def setup_notebook(seed: int = 0, *, threads: int | None = None, check: bool = True) -> dict[str, Any]:
    """Check papermill's parameters (:func:`check_parameters`), seed, set threads, quiet logs and make
    figures PNG; return a short environment report. Every chapter calls it first after its parameters cell."""
    if check:
        check_parameters()
    if threads:
        torch.set_num_threads(threads)
    seed_everything(seed)
    quiet_libraries()
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook")
    plt.rcParams.update({"figure.dpi": 100, "savefig.dpi": 100, "figure.figsize": (6.4, 4.0)})
    pd.set_option("display.precision", 3)
    pd.set_option("display.max_colwidth", 80)
    try:
        from IPython import get_ipython

        shell = get_ipython()
        if shell is not None:
            shell.run_line_magic("matplotlib", "inline")
            shell.run_line_magic("config", "InlineBackend.figure_formats = ['png']")
    except ImportError:
        pass
    return {
        "seed": seed,
        "torch": torch.__version__,
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "threads": torch.get_num_threads(),
        "PYTHONHASHSEED": os.environ.get("PYTHONHASHSEED"),
    }


def source_excerpt(*objects: Any) -> str:
    """The source code of functions, methods or classes as they are in the library, one after the other."""
    if not objects:
        raise ValueError("name at least one function, method or class to show")
    return "\n\n".join(textwrap.dedent(inspect.getsource(obj)).rstrip() for obj in objects)


def show_source(*objects: Any) -> None:
    """Display :func:`source_excerpt` as a highlighted code block: the chapter shows the very code
    that ran (the d2l way), never a copy that could drift from it."""
    from IPython.display import Markdown, display

    display(Markdown(f"```python\n{source_excerpt(*objects)}\n```"))
