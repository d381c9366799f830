"""Built-in plugin: the files the build puts on the image, and how plugin files are gathered.

The built-in payload is an ordinary `bareflow_image_files` implementation: it names where each
build product goes on the FAT16 partition (docs/image-layout.md), so a third-party plugin
registered after it can replace any of these files, or add its own, the same way.
"""
import os

from bareflow import hookimpl
from bareflow.errors import BareflowError
from bareflow.image import fat16

# Build product -> its path on the image (the kernel and the loaders look for these names).
PRODUCT_PATHS = {
    "kernel": "/KERNEL.BIN",
    "libc_manifest": "/LIBC.MAN",
    "model": "/MODEL.BIN",
    "tokenizer": "/TOKENIZR.BIN",
    "policy_table": "/POLICY.TBL",
    "profile": "/PROFILE.BIN",
}


@hookimpl
def bareflow_image_files(files, products):
    for product, path in PRODUCT_PATHS.items():
        files[path] = products[product]
    files.update(products["modules"])


def plugin_image_files(pm, variables, products) -> dict:
    """{8.3 path: bytes or source file path} from every plugin's bareflow_image_files.

    Plugins are asked one by one in registration order, each seeing (and free to change) the
    files of the plugins before it.  Every path and value is checked, and a bad one is reported
    with the plugin that put it there (BareflowError).
    """
    files: dict = {}
    for impl in pm.hook_caller("bareflow_image_files").get_hookimpls():     # registration order
        before = dict(files)
        kwargs = {"variables": dict(variables), "files": files, "products": products}
        impl.function(*[kwargs[a] for a in impl.argnames])
        where = f"plugin {impl.plugin_name!r} (bareflow_image_files)"
        for path, data in files.items():
            if path in before and before[path] is data:
                continue
            try:
                fat16.split_path(path)
            except BareflowError as exc:
                raise BareflowError(f"{where}: {exc}") from None
            if isinstance(data, bytearray):
                files[path] = bytes(data)
            elif isinstance(data, (str, os.PathLike)):
                if not os.path.isabs(os.fspath(data)):
                    raise BareflowError(f"{where}: {path} names the file {os.fspath(data)!r}; give an "
                                        "absolute path")
            elif not isinstance(data, bytes):
                raise BareflowError(f"{where}: {path} must be bytes or a file path, got "
                                    f"{type(data).__name__}")
    return files
