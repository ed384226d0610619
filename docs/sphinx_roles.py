"""A griffe extension for the API pages: the docstrings' Sphinx roles (``:class:`Head```, ``:func:`~.make```)
shown as inline code naming their target, since mkdocstrings reads numpydoc sections but not Sphinx roles."""

import re

import griffe

ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|data|attr|exc|obj|const):`~?\.?([^`]+)`")


def _plain(text):
    """``:func:`~tagger.x.make``` -> ```make``` (the tilde's short form), others -> ```their.target```."""

    def code(match):
        whole = match.group(0)
        target = match.group(1)
        return f"`{target.rsplit('.', 1)[-1] if '`~' in whole else target}`"

    return ROLE.sub(code, text)


class SphinxRoles(griffe.Extension):
    def on_instance(self, *, obj, **kwargs):
        if obj.docstring is not None:
            obj.docstring.value = _plain(obj.docstring.value)
