"""MkDocs hook: serve MathJax from the built site, so the math renders offline.

MathJax comes from a package of the docs extra (`django-static-mathjax`, MathJax
3's own `es5/` build) and is added to the site's files at build time: the
repository holds no copy of it, and a reader's browser fetches nothing from
elsewhere. The whole `es5/` folder is copied because MathJax loads its fonts
and the extensions a page asks for (`\\require`, the accessibility menu) from
beside its entry script.
"""

import pathlib

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File

# Where the pages load it from: `extra_javascript` in mkdocs.yml names
# `javascripts/mathjax/tex-mml-chtml.js`.
SITE_FOLDER = "javascripts/mathjax"


def mathjax_folder():
    """The installed MathJax `es5/` folder, or a PluginError that says how to get it."""
    try:
        import mathjax
    except ImportError:
        raise PluginError(
            "The docs render their math with MathJax from the package "
            "`django-static-mathjax`, which is not installed. Install the docs "
            'extra: pip install -e ".[docs]"'
        ) from None
    folder = pathlib.Path(mathjax.__file__).parent / "static" / "mathjax" / "es5"
    if not (folder / "tex-mml-chtml.js").is_file():
        raise PluginError(f"No MathJax 3 build in {folder}: expected tex-mml-chtml.js")
    return folder


def on_files(files, config):
    folder = mathjax_folder()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            uri = f"{SITE_FOLDER}/{path.relative_to(folder).as_posix()}"
            files.append(File.generated(config, uri, abs_src_path=str(path)))
    return files
