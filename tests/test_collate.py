import pytest
import torch

from harness.data.collate import IGNORE, pad, pad_batch


def test_pad_right_and_left_with_masks():
    ids, mask = pad([[5, 6, 7], [8]], 0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]] and mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    ids, mask = pad([[5, 6, 7], [8]], 0, side="left")
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]] and mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert ids.dtype == mask.dtype == torch.long
    with pytest.raises(ValueError, match="pad side 'top'"):
        pad([[1]], 0, side="top")


def test_pad_batch_pads_labels_with_ignore():
    batch = pad_batch([{"input_ids": [1, 2], "labels": [IGNORE, 2]}, {"input_ids": [3], "labels": [3]}], 9)
    assert batch["input_ids"].tolist() == [[1, 2], [3, 9]]
    assert batch["labels"].tolist() == [[IGNORE, 2], [3, IGNORE]]
    assert batch["attention_mask"].tolist() == [[1, 1], [1, 0]]
