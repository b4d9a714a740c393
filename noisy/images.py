"""Image files to uint8 arrays: decoding any PIL-readable file to (size, size, 3) RGB,
listing a folder's images, and decoding a folder into an `.npy` once (the unlabeled pool's
cache), streamed through a memory map so a pool larger than RAM never sits in memory."""
import concurrent.futures
import hashlib
import os
import warnings

import numpy as np
from PIL import Image, ImageOps

from noisy.files import file_record, file_stat, read_json, save_json, save_text, unchanged
from noisy.errors import UserError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")
Image.MAX_IMAGE_PIXELS = 20_000 ** 2  # allow large photos, still refuse decompression bombs


def to_rgb_array(image, size):
    """Any PIL image (grey, RGBA, palette, 16-bit, CMYK, any size) -> uint8 (size, size, 3).
    Non-square images are centre-cropped to a square first, as a resize would squash them."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):  # 16/32-bit grey: rescale to 8 bit
        a = np.asarray(image, dtype=np.float64)
        span = a.max() - a.min()
        a = (a - a.min()) * (255.0 / span) if span > 0 else np.zeros_like(a)
        image = Image.fromarray(a.astype(np.uint8))
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image)
    image = image.convert("RGB")
    if image.size != (size, size):
        image = ImageOps.fit(image, (size, size), Image.BICUBIC)
    return np.asarray(image, dtype=np.uint8)


def read_image(path, size):
    """Decode one file to uint8 (size, size, 3); raises OSError/ValueError if unreadable."""
    with Image.open(path) as image:
        image.draft("RGB", (size, size))  # JPEG: decode large photos at reduced size
        image.load()
        return to_rgb_array(image, size)


def list_images(folder):
    """All image files below `folder`, sorted, by extension."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        found += [os.path.join(root, f) for f in sorted(files)
                  if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith(".")]
    return found


def decode_images(paths, size, workers=8):
    """Yield (path, uint8 image) for each path, in order, decoded by `workers` threads;
    (path, exception) for a file that cannot be read as an image."""
    def decode(path):
        try:
            return path, read_image(path, size)
        except Exception as e:  # PIL raises many kinds for broken files
            return path, e

    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        yield from pool.map(decode, paths, chunksize=64)


def warn_skipped(bad, where=""):
    """One warning that counts and names (the first five) unreadable files."""
    if bad:
        shown = "; ".join(bad[:5]) + (f"; and {len(bad) - 5} more" if len(bad) > 5 else "")
        warnings.warn(f"skipped {len(bad)} unreadable image file(s){where}: {shown}", stacklevel=3)


def images_to_npy(paths, out_path, size, workers=8):
    """Decode `paths` into a uint8 .npy at `out_path`, streamed through a memory map so a
    pool larger than RAM never sits in memory. Unreadable files are skipped, counted and
    named in a warning. Returns the list of paths that were kept."""
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    tmp = f"{out_path}.partial{os.getpid()}.npy"  # shard runs may fill one cache at once
    images = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8,
                                       shape=(max(len(paths), 1), size, size, 3))
    kept, bad = [], []
    for path, result in decode_images(paths, size, workers):
        if isinstance(result, Exception):
            bad.append(f"{path} ({type(result).__name__})")
        else:
            images[len(kept)] = result
            kept.append(path)
    images.flush()
    del images
    warn_skipped(bad)
    if not kept:
        os.remove(tmp)
        return kept
    # Rename when every file was read; otherwise copy the rows kept into a shorter array.
    if len(kept) == len(paths):
        os.replace(tmp, out_path)
    else:
        src = np.load(tmp, mmap_mode="r")
        dst = np.lib.format.open_memmap(f"{out_path}.trim{os.getpid()}.npy", mode="w+", dtype=np.uint8,
                                        shape=(len(kept), size, size, 3))
        for start in range(0, len(kept), 65536):
            stop = min(start + 65536, len(kept))
            dst[start:stop] = src[start:stop]
        dst.flush()
        del dst, src
        os.replace(f"{out_path}.trim{os.getpid()}.npy", out_path)
        os.remove(tmp)
    return kept


def folder_identity(paths, size):
    """sha256 (16 hex digits) of image files as they are now: the path, byte size and
    modification time of each, and the size they are decoded to. A file rewritten under
    the same name changes it."""
    digest = hashlib.sha256(str(size).encode())
    for path in paths:
        stat = file_stat(path)
        digest.update(f"\n{os.path.abspath(path)}\t{stat.st_size}\t{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def cache_image_folder(folder, cache_root, size, paths=None):
    """Decode the images below `folder` (or the chosen `paths` in it) once into
    `cache_root/<identity>/images.npy`, listing the files kept in `files.txt` beside it.
    The cache is keyed by `folder_identity`, so changed files make a new cache and a cache
    never changes under a stage that used it. Returns (images.npy path, images, identity)."""
    paths = list_images(folder) if paths is None else paths
    if not paths:
        raise UserError(f"--unlabeled: {folder} holds no image files ({', '.join(IMAGE_EXTENSIONS)})")
    key = folder_identity(paths, size)
    cache = os.path.join(cache_root, key)
    pool_file, source_file = os.path.join(cache, "images.npy"), os.path.join(cache, "source.json")
    if os.path.isfile(source_file) and os.path.isfile(pool_file):
        record = read_json(source_file, f"delete {cache} to decode the folder again")
        kept = record.get("kept")
        if isinstance(kept, int) and kept > 0 and unchanged(pool_file, record.get("file")):
            print(f"reusing {pool_file} ({kept} images from {folder})", flush=True)
            return pool_file, kept, key
        # A cache changed or damaged since it was written is made again (stages that used
        # it recorded its sha256, and refuse the new file if it differs).
        print(f"{pool_file} is not the cache as it was written (its record or content differs): decoding the "
              "folder again", flush=True)
    print(f"reading {len(paths)} images from {folder} into {pool_file} ...", flush=True)
    kept = images_to_npy(paths, pool_file, size)
    if not kept:
        raise UserError(f"--unlabeled: none of the {len(paths)} files in {folder} could be read as an image")
    save_text(os.path.join(cache, "files.txt"), "\n".join(kept) + "\n")
    save_json(source_file, {"folder": os.path.abspath(folder), "identity": key, "kept": len(kept),
                            "file": file_record(pool_file)})
    return pool_file, len(kept), key
