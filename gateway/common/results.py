"""Result types that mean the same to every role: what a model returns, what a client gets.

box = Box.from_proto(detect_response.bounding_boxes[0])   # the client, unpacking a reply
reply_box = box.to_proto()                                # the cell, building one
"""

from __future__ import annotations

from dataclasses import dataclass

from saxml.protobuf import vision_pb2


@dataclass(frozen=True)
class Box:
    """One detected object: center, size, label and score (and a mask if the model gives one)."""

    cx: float
    cy: float
    w: float
    h: float
    text: str
    score: float
    mask_height: int = 0
    mask_width: int = 0
    mask_values: bytes = b""

    @classmethod
    def from_proto(cls, box: vision_pb2.BoundingBox) -> Box:
        """The box in Sax's ``BoundingBox``."""
        mask = box.mask
        return cls(
            box.cx, box.cy, box.w, box.h, box.text, box.score,
            mask.mask_height, mask.mask_width, mask.mask_values,
        )  # fmt: skip

    def to_proto(self) -> vision_pb2.BoundingBox:
        """Sax's ``BoundingBox``; the mask only when there is one."""
        box = vision_pb2.BoundingBox(
            cx=self.cx, cy=self.cy, w=self.w, h=self.h, text=self.text, score=self.score
        )
        if self.mask_values:
            box.mask.CopyFrom(
                vision_pb2.DetectionMask(
                    mask_values=self.mask_values,
                    mask_height=self.mask_height,
                    mask_width=self.mask_width,
                )
            )
        return box
