//! Pixel work shared by the image models, kept free of ONNX Runtime and Kafka so it can be unit-
//! and property-tested: decoding untrusted bytes, resizing, warping, and the small geometry
//! (similarity and perspective transforms, minimum-area rectangles) the pipelines need.
//!
//! Resizing and warping follow OpenCV's conventions (pixel centres at +0.5, `INTER_AREA` box
//! averaging when shrinking) because the reference pipelines the models were trained and checked
//! with use OpenCV; matching them keeps tidal's outputs within tolerance of the references.

mod decode;
mod geometry;
mod planar;
mod resample;

pub use decode::{decode_image, ImageLimits, ImageProblem, ImageRejected};
pub use geometry::{min_area_rect, perspective_transform, similarity_transform, Point, RotatedRect};
pub use planar::FloatImage;
pub use resample::{
    resize_area, resize_area_rgb, resize_linear, resize_linear_rgb, warp_affine, warp_perspective, Border,
};
