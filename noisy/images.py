"""Image files to uint8 arrays: decoding any PIL-readable file to (size, size, 3) RGB,
listing a folder's images, and decoding a folder into an `.npy` once (the unlabeled pool's
cache), streamed through a memory map so a pool larger than RAM never sits in memory."""
import concurrent.futures
import hashlib
import json
import os
import warnings

import numpy as np
from PIL import Image, ImageOps

from noisy.artifacts import save_json, save_text
from noisy.settings import UserError

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
    tmp = out_path + ".partial.npy"
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
        dst = np.lib.format.open_memmap(out_path + ".trim.npy", mode="w+", dtype=np.uint8,
                                        shape=(len(kept), size, size, 3))
        for start in range(0, len(kept), 65536):
            stop = min(start + 65536, len(kept))
            dst[start:stop] = src[start:stop]
        dst.flush()
        del dst, src
        os.replace(out_path + ".trim.npy", out_path)
        os.remove(tmp)
    return kept


def cache_image_folder(folder, out_dir, size):
    """Decode every image below `folder` into `out_dir/pool_images.npy` once, listing the
    files kept in `out_dir/pool_files.txt`; a later call with the same file listing and
    size reuses the cache. Returns (path of the .npy, number of images)."""
    paths = list_images(folder)
    if not paths:
        raise UserError(f"--unlabeled: {folder} holds no image files ({', '.join(IMAGE_EXTENSIONS)})")
    pool_file = os.path.join(out_dir, "pool_images.npy")
    listing = hashlib.sha256("\n".join(paths + [str(size)]).encode()).hexdigest()
    source_file = os.path.join(out_dir, "pool_source.json")
    if os.path.isfile(source_file) and os.path.isfile(pool_file):
        with open(source_file) as f:
            cached = json.load(f)
        if cached.get("listing") == listing:
            print(f"reusing {pool_file} ({cached['kept']} images from {folder})", flush=True)
            return pool_file, cached["kept"]
    print(f"reading {len(paths)} images from {folder} into {pool_file} ...", flush=True)
    kept = images_to_npy(paths, pool_file, size)
    if not kept:
        raise UserError(f"--unlabeled: none of the {len(paths)} files in {folder} could be read as an image")
    save_text(os.path.join(out_dir, "pool_files.txt"), "\n".join(kept) + "\n")
    save_json(source_file, {"folder": os.path.abspath(folder), "listing": listing, "kept": len(kept)})
    return pool_file, len(kept)
