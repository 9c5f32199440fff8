"""Prompts: frames and coordinate transforms, boxes from masks, point selection."""

from .transforms import Frame, box_from_mask, component_boxes

__all__ = ["Frame", "box_from_mask", "component_boxes"]
