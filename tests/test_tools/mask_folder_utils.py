"""A tiny DAVIS-style folder of videos with instance-id PNG masks."""
import numpy as np
from PIL import Image

# Per video: frame count and, per instance id, its box (x0, y0, x1, y1) in
# each frame (None: absent in that frame).
VIDEOS = {
    'video1': (3, {
        1: [(2, 2, 12, 10), (4, 2, 14, 10), None],
        2: [(20, 8, 30, 20), (18, 8, 28, 20), (16, 8, 26, 20)]
    }),
    'video2': (2, {
        1: [(5, 5, 25, 20), (6, 6, 26, 21)]
    }),
    'video3': (3, {
        1: [(0, 0, 8, 8), (1, 1, 9, 9), (2, 2, 10, 10)],
        3: [None, (30, 10, 40, 22), (28, 10, 38, 22)]
    }),
}
CATEGORIES = {
    'video1': {'1': 'cat', '2': 'dog'},
    'video2': {'1': 'dog'},
    'video3': {'1': 'cat', '3': 'dog'},
}
HEIGHT, WIDTH = 24, 40


def write_mask_folder(root, videos=VIDEOS, palette_video='video3'):
    """Write JPEGImages/ and Annotations/ under ``root``.

    The masks of ``palette_video`` are palette PNGs, the others grey-level.

    Returns:
        dict: ``(video, frame stem) -> (H, W) int array`` of instance ids.
    """
    rng = np.random.default_rng(0)
    id_maps = {}
    for video, (length, instances) in videos.items():
        (root / 'JPEGImages' / video).mkdir(parents=True, exist_ok=True)
        (root / 'Annotations' / video).mkdir(parents=True, exist_ok=True)
        for t in range(length):
            stem = f'{t:05d}'
            ids = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
            frame = rng.integers(60, 120, (HEIGHT, WIDTH, 3), dtype=np.uint8)
            for instance_id, boxes in instances.items():
                if boxes[t] is None:
                    continue
                x0, y0, x1, y1 = boxes[t]
                ids[y0:y1, x0:x1] = instance_id
                frame[y0:y1, x0:x1] = (200, 60 * instance_id, 40)
            Image.fromarray(frame).save(root / 'JPEGImages' / video /
                                        f'{stem}.jpg')
            mask = Image.fromarray(ids, mode='L')
            if video == palette_video:
                mask = mask.convert('P')
                mask.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0])
            mask.save(root / 'Annotations' / video / f'{stem}.png')
            id_maps[video, stem] = ids.astype(np.int64)
    return id_maps
