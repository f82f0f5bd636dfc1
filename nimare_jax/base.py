"""NiMARE's ``NiMAREBase`` conveniences for estimators, kernels and correctors.

:class:`NiMAREBase` gives a class NiMARE's (scikit-learn style) ``get_params`` /
``set_params`` over its constructor arguments and pickled ``save`` / ``load``.
"""

from __future__ import annotations

import gzip
import inspect
import pickle

from nimare_jax.docstrings import fill_doc


class NiMAREBase:
    """Constructor parameters as a dictionary, and pickled files, as NiMARE's base class.

    A parameter is a named argument of the class's ``__init__`` (``**kwargs`` is not one);
    its value is the attribute of the same name (None if the class keeps none).
    """

    @classmethod
    def _param_names(cls) -> list[str]:
        params = inspect.signature(cls.__init__).parameters.values()
        return [
            p.name
            for p in params
            if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
        ]

    def get_params(self, deep: bool = True) -> dict:
        """Return the constructor parameters and their current values.

        Parameters
        ----------
        deep : bool
            Also list the parameters of parameter values that have ``get_params`` (a
            kernel's ``r`` as ``kernel_transformer__r``).

        Returns
        -------
        dict
            Parameter name -> value.
        """
        out = {}
        for name in self._param_names():
            value = getattr(self, name, None)
            if deep and hasattr(value, "get_params") and not isinstance(value, type):
                out.update((f"{name}__{k}", v) for k, v in value.get_params().items())
            out[name] = value
        return out

    def set_params(self, **params):
        """Set constructor parameters (``name`` or nested ``name__sub``) on this object.

        Parameters
        ----------
        **params
            New values.

        Returns
        -------
        object
            ``self``.

        Raises
        ------
        ValueError
            If a name is not a parameter (see :meth:`get_params`).
        """
        valid = self.get_params(deep=False)
        nested: dict = {}
        for key, value in params.items():
            name, _, sub = key.partition("__")
            if name not in valid:
                raise ValueError(
                    f"{type(self).__name__} has no parameter {name!r}; its parameters are "
                    f"{sorted(valid)}"
                )
            if sub:
                nested.setdefault(name, {})[sub] = value
            else:
                setattr(self, name, value)
                valid[name] = value
        for name, sub_params in nested.items():
            valid[name].set_params(**sub_params)
        return self

    @fill_doc
    def save(self, filename, compress: bool = True) -> None:
        """Pickle this object to a file.

        Parameters
        ----------
        %(save_params)s
        """
        write_pickle(self, filename, compress)

    @classmethod
    @fill_doc
    def load(cls, filename, compressed: bool = True):
        """Read an object written by :meth:`save`.

        Parameters
        ----------
        %(load_params)s

        Returns
        -------
        object
            The object, an instance of ``cls``.

        Raises
        ------
        TypeError
            If the file holds something else.
        """
        return read_pickle(cls, filename, compressed)


@fill_doc
def write_pickle(obj, filename, compress: bool = True) -> None:
    """Pickle ``obj`` to ``filename``, gzipped if ``compress``.

    Parameters
    ----------
    obj : object
        What to write.
    %(save_params)s
    """
    opener = gzip.open if compress else open
    with opener(filename, "wb") as f:
        pickle.dump(obj, f)


def read_pickle(cls, filename, compressed: bool = True):
    """Read a pickle written by :func:`write_pickle`, checking it holds a ``cls``.

    Only read files you trust: unpickling can run code.

    Parameters
    ----------
    cls : type
        Expected class.
    filename : str or pathlib.Path
        File to read.
    compressed : bool
        Whether the file is gzipped.

    Returns
    -------
    object
        The object.

    Raises
    ------
    TypeError
        If the file holds something other than a ``cls`` instance.
    """
    opener = gzip.open if compressed else open
    with opener(filename, "rb") as f:
        obj = pickle.load(f)
    if not isinstance(obj, cls):
        raise TypeError(f"{filename} holds a {type(obj).__name__}, not a {cls.__name__}")
    return obj
