"""Import stand-ins for torchvision and torchaudio in the test ComfyUI venv (scripts/comfyui-venv.sh installs it).

There are no CPU builds of either for torch 2.13, and ComfyUI imports them at start-up only to define things
our nodes never run. Any submodule imports; any name in it is a class that can be subclassed, read from or
referenced, and raises the moment something tries to use it. A real torchvision/torchaudio, if present,
still wins: this finder is consulted last.
"""
import importlib.abc
import importlib.machinery
import sys
import types

ROOTS = ("torchvision", "torchaudio")
VERSION = "0.0.0+happyhorse.stub"


def _unavailable(full_name):
    def fail(*args, **kwargs):
        raise RuntimeError(f"{full_name} is a stand-in: this ComfyUI test venv has no real {full_name.split('.')[0]}")
    return fail


class _StubType(type):
    """Class-level attribute reads (Enum.MEMBER, Class.method) give further stand-ins instead of failing."""

    def __getattr__(cls, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _stub_class(f"{cls.__module__}.{cls.__qualname__}", name)


def _stub_class(owner, name):
    full = f"{owner}.{name}"
    return _StubType(name, (), {"__init__": _unavailable(full), "__call__": _unavailable(full), "__module__": owner,
                                "__qualname__": name})


class _StubModule(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        value = _stub_class(self.__name__, name)
        setattr(self, name, value)
        return value


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path, target=None):
        if fullname.split(".")[0] in ROOTS:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _StubModule(spec.name)
        module.__path__ = []
        module.__version__ = VERSION
        return module

    def exec_module(self, module):
        pass


def install():
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.append(_Finder())
