"""Sphinx configuration of the skocl documentation.

Build with ``python -m sphinx -W --keep-going -b html docs docs/_build/html``. Nothing
here needs the network: intersphinx is left out because the build runs offline.
"""

import os
import re
import sys

# The package is installed editable in .venv; the path makes a plain checkout work too.
sys.path.insert(0, os.path.abspath(".."))

import skocl

project = "skocl"
author = "The skocl developers"
copyright = "The skocl developers"
release = skocl.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
root_doc = "index"
default_role = "literal"
pygments_style = "sphinx"

# -- autodoc / autosummary ---------------------------------------------------------
autosummary_generate = True
autodoc_typehints = "none"  # numpydoc carries the types, as in scikit-learn
autodoc_member_order = "groupwise"
# An undocumented override (TrunkHeadNet.forward) would otherwise show torch's generic
# nn.Module.forward text.
autodoc_inherit_docstrings = False


# -- numpydoc ----------------------------------------------------------------------
# autodoc's :members: lists the methods; numpydoc listing them again would document
# every method twice (duplicate object warnings).
numpydoc_show_class_members = False
numpydoc_attributes_as_param_list = True
numpydoc_xref_param_type = False

# -- sphinx-gallery ----------------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "download_all_examples": False,
    "remove_config_comments": True,
    "show_memory": False,
    # The root sg_execution_times.rst would land in docs/, outside the ignored paths.
    "write_computation_times": False,
    "plot_gallery": True,
}

# -- HTML --------------------------------------------------------------------------
html_theme = "alabaster"
html_title = f"skocl {release}"
html_theme_options = {
    "description": "Online fine-tuning of PyTorch classifiers, the scikit-learn way",
    "fixed_sidebar": True,
}
html_static_path = []


# -- hooks -------------------------------------------------------------------------
def _skip_members(app, what, name, obj, skip, options):
    """Leave out the metadata-routing setters sklearn generates on every estimator,
    and the field aliases of NamedTuples.

    The setters' docstrings link to labels of scikit-learn's own documentation, which
    an offline build cannot resolve; api.rst points readers to scikit-learn instead.
    """
    if re.fullmatch(r"set_\w+_request", name):
        return True
    # A NamedTuple's fields (StreamChunk) are described in its Attributes section;
    # autodoc would list them again as "Alias for field number N".
    if (getattr(obj, "__doc__", None) or "").startswith("Alias for field number"):
        return True
    return skip


def setup(app):
    app.connect("autodoc-skip-member", _skip_members)
