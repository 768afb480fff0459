"""The shapes world renders what its spec says and the evaluator recovers it from pixels alone."""

import numpy as np

from vidmesh_tiny import captions, evaluate, world


def test_evaluator_recovers_ground_truth_at_every_size():
    rng = np.random.default_rng(5)
    for split in ("train", "heldout"):
        for bucket in ((16, 64, 64), (16, 64, 96), (32, 64, 64), (8, 64, 64)):
            for _ in range(12):
                spec = world.sample_spec(rng, split, bucket=bucket, n_objects=1)
                res = evaluate.score(spec, evaluate.analyse(world.render(spec)))
                assert all(res.values()), (spec, res)


def test_evaluator_rejects_wrong_video():
    rng = np.random.default_rng(6)
    spec = world.sample_spec(rng, "train", bucket=(16, 64, 64), n_objects=1)
    blank = np.zeros((16, 64, 64, 3), np.uint8) + np.array(world.BACKGROUNDS["white"], np.uint8)
    res = evaluate.score(spec, evaluate.analyse(blank))
    assert not res["color"] and not res["shape"]


def test_train_split_never_contains_held_out_combinations():
    rng = np.random.default_rng(7)
    for _ in range(2000):
        s = world.sample_spec(rng, "train")
        for o in s.objects:
            assert not world.is_held_out(o.color, o.shape, o.direction, s.background)
    for _ in range(200):
        s = world.sample_spec(rng, "heldout", n_objects=1)
        o = s.objects[0]
        assert world.is_held_out(o.color, o.shape, o.direction, s.background)


def test_captions_name_every_attribute():
    rng = np.random.default_rng(8)
    for style in ("train", "paraphrase"):
        for _ in range(200):
            s = world.sample_spec(rng, "train", n_objects=1)
            c = captions.caption(s, rng, style)
            o = s.objects[0]
            assert o.color in c and s.background in c
            assert any(w in c for w in captions.SHAPE_WORDS[o.shape])
            assert any(w in c for w in captions.DIRECTION_WORDS[o.direction])


def test_objects_stay_inside_the_frame():
    rng = np.random.default_rng(9)
    for _ in range(300):
        s = world.sample_spec(rng, "train")
        for o in s.objects:
            path = world.trajectory(o, s.frames, s.height, s.width)
            r = world.SIZES[o.size] * min(s.height, s.width) / 64
            assert (path[:, 0] - r >= 0).all() and (path[:, 0] + r <= s.width).all()
            assert (path[:, 1] - r >= 0).all() and (path[:, 1] + r <= s.height).all()
