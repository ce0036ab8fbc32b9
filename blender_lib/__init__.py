"""blender_lib: the helper library behind Blender Book.

Each module is one box of the LLM-Blender / ZOOTER figures and is usable on its own:
``models`` (load any model by name), ``runner`` (papermill batch runs of the chapters),
``results`` (each chapter's headline numbers), ``notebook`` (one setup call per chapter).
"""

__version__ = "0.1.0"
