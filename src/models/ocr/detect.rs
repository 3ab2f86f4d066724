//! DB (Differentiable Binarization) post-processing: a text-probability map → text boxes.
//!
//! Threshold the map, dilate by 2×2, trace the outer contours, fit each a minimum-area
//! rectangle, drop rectangles whose mean probability is below the box threshold, grow each by
//! `area × unclip_ratio / perimeter` (the rectangle that a round offset of the box would fit
//! in), scale to the image, and sort top-to-bottom then left-to-right. As in PaddleOCR.
use image::GrayImage;
use imageproc::contours::{find_contours, BorderType};
use ndarray::ArrayView2;

use crate::vision::{min_area_rect, Point};

/// Post-processing settings (from the manifest).
#[derive(Debug, Clone, Copy)]
pub struct DbSettings {
    pub threshold: f32,
    pub box_threshold: f32,
    pub unclip_ratio: f64,
    pub max_candidates: usize,
}

/// Smallest short side of a box before and after growing it.
const MIN_SIZE: f64 = 3.0;
/// Boxes whose tops are closer than this (in pixels) are on the same line.
const SAME_LINE_PX: f64 = 10.0;

/// Text boxes (tl, tr, br, bl, integer-valued) in a `dest_width × dest_height` image, in reading
/// order, from a probability map of any size.
pub fn text_boxes(prob: ArrayView2<'_, f32>, dest_width: usize, dest_height: usize, s: &DbSettings) -> Vec<[Point; 4]> {
    let (height, width) = prob.dim();
    if width == 0 || height == 0 {
        return Vec::new();
    }
    let bitmap = dilated_mask(prob, s.threshold);
    let contours = find_contours::<i32>(&bitmap);
    let mut boxes = Vec::new();
    for contour in contours.iter().filter(|c| c.border_type == BorderType::Outer).take(s.max_candidates) {
        let points: Vec<Point> = contour.points.iter().map(|p| Point::new(f64::from(p.x), f64::from(p.y))).collect();
        let Some(rect) = min_area_rect(&points) else { continue };
        if rect.short_side() < MIN_SIZE {
            continue;
        }
        if mean_inside(prob, &rect.corners()) < s.box_threshold {
            continue;
        }
        let perimeter = 2.0 * (rect.width + rect.height);
        let grown = rect.expanded(rect.width * rect.height * s.unclip_ratio / perimeter);
        if grown.short_side() < MIN_SIZE + 2.0 {
            continue;
        }
        let scale = |p: Point| {
            Point::new(
                (p.x / width as f64 * dest_width as f64).round().clamp(0.0, dest_width as f64),
                (p.y / height as f64 * dest_height as f64).round().clamp(0.0, dest_height as f64),
            )
        };
        let corners = grown.corners().map(scale);
        let ordered = order_clockwise(corners).map(|p| {
            Point::new(
                p.x.clamp(0.0, (dest_width - 1) as f64).trunc(),
                p.y.clamp(0.0, (dest_height - 1) as f64).trunc(),
            )
        });
        if ordered[0].distance(ordered[1]).trunc() <= 3.0 || ordered[0].distance(ordered[3]).trunc() <= 3.0 {
            continue;
        }
        boxes.push(ordered);
    }
    reading_order(boxes)
}

/// `prob > threshold`, dilated by a 2×2 square (each pixel also lights its right and lower
/// neighbours), as an 8-bit mask for contour tracing.
fn dilated_mask(prob: ArrayView2<'_, f32>, threshold: f32) -> GrayImage {
    let (height, width) = prob.dim();
    let mut mask = GrayImage::new(width as u32, height as u32);
    for y in 0..height {
        for x in 0..width {
            let lit =
                (y.saturating_sub(1)..=y).any(|yy| (x.saturating_sub(1)..=x).any(|xx| prob[[yy, xx]] > threshold));
            if lit {
                mask.put_pixel(x as u32, y as u32, image::Luma([255]));
            }
        }
    }
    mask
}

/// Mean probability over the pixels inside the quadrilateral (edges included).
fn mean_inside(prob: ArrayView2<'_, f32>, quad: &[Point; 4]) -> f32 {
    let (height, width) = prob.dim();
    let clamp = |v: f64, hi: usize| (v.max(0.0) as usize).min(hi - 1);
    let xs = quad.iter().map(|p| p.x);
    let ys = quad.iter().map(|p| p.y);
    let (xmin, xmax) =
        (clamp(xs.clone().fold(f64::MAX, f64::min).floor(), width), clamp(xs.fold(f64::MIN, f64::max).ceil(), width));
    let (ymin, ymax) =
        (clamp(ys.clone().fold(f64::MAX, f64::min).floor(), height), clamp(ys.fold(f64::MIN, f64::max).ceil(), height));
    let corners = quad.map(|p| Point::new(p.x.trunc(), p.y.trunc()));
    let (mut sum, mut count) = (0.0f64, 0usize);
    for y in ymin..=ymax {
        for x in xmin..=xmax {
            if inside_convex(&corners, Point::new(x as f64, y as f64)) {
                sum += f64::from(prob[[y, x]]);
                count += 1;
            }
        }
    }
    if count == 0 {
        0.0
    } else {
        (sum / count as f64) as f32
    }
}

/// Whether `p` is inside or on the convex quadrilateral (either winding).
fn inside_convex(quad: &[Point; 4], p: Point) -> bool {
    let mut sign = 0.0f64;
    for i in 0..4 {
        let (a, b) = (quad[i], quad[(i + 1) % 4]);
        let cross = (b.x - a.x) * (p.y - a.y) - (b.y - a.y) * (p.x - a.x);
        if cross.abs() < 1e-9 {
            continue;
        }
        if sign == 0.0 {
            sign = cross.signum();
        } else if cross.signum() != sign {
            return false;
        }
    }
    true
}

/// tl, tr, br, bl: the two leftmost points are the left side, each side ordered by y.
fn order_clockwise(points: [Point; 4]) -> [Point; 4] {
    let mut by_x = points;
    by_x.sort_by(|a, b| a.x.total_cmp(&b.x));
    let (mut left, mut right) = ([by_x[0], by_x[1]], [by_x[2], by_x[3]]);
    left.sort_by(|a, b| a.y.total_cmp(&b.y));
    right.sort_by(|a, b| a.y.total_cmp(&b.y));
    [left[0], right[0], right[1], left[1]]
}

/// Top to bottom; boxes whose tops are within `SAME_LINE_PX` of the previous one share a line
/// and go left to right.
fn reading_order(mut boxes: Vec<[Point; 4]>) -> Vec<[Point; 4]> {
    boxes.sort_by(|a, b| a[0].y.total_cmp(&b[0].y));
    let mut line = 0usize;
    let mut keyed: Vec<(usize, f64, [Point; 4])> = Vec::with_capacity(boxes.len());
    for (i, b) in boxes.iter().enumerate() {
        if i > 0 && b[0].y - boxes[i - 1][0].y >= SAME_LINE_PX {
            line += 1;
        }
        keyed.push((line, b[0].x, *b));
    }
    keyed.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
    keyed.into_iter().map(|(_, _, b)| b).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    const SETTINGS: DbSettings =
        DbSettings { threshold: 0.3, box_threshold: 0.5, unclip_ratio: 1.6, max_candidates: 100 };

    fn map_with(rects: &[(usize, usize, usize, usize)], width: usize, height: usize) -> Array2<f32> {
        let mut prob = Array2::<f32>::zeros((height, width));
        for &(x, y, w, h) in rects {
            for yy in y..y + h {
                for xx in x..x + w {
                    prob[[yy, xx]] = 0.9;
                }
            }
        }
        prob
    }

    #[test]
    fn two_lines_become_two_boxes_in_reading_order() {
        let prob = map_with(&[(10, 40, 60, 10), (12, 10, 80, 12)], 100, 60);
        let boxes = text_boxes(prob.view(), 200, 120, &SETTINGS);
        assert_eq!(boxes.len(), 2);
        // The upper line first; coordinates doubled by the 2x destination.
        assert!(boxes[0][0].y < boxes[1][0].y);
        assert!(boxes[0][0].x <= 24.0 && boxes[0][1].x >= 184.0, "{:?}", boxes[0]);
        // Grown beyond the blob: the 12-pixel-high line becomes taller than 24 pixels at 2x.
        assert!(boxes[0][3].y - boxes[0][0].y > 24.0, "{:?}", boxes[0]);
    }

    #[test]
    fn specks_and_faint_regions_are_dropped() {
        let mut prob = map_with(&[(5, 5, 2, 2)], 50, 50);
        for y in 20..30 {
            for x in 10..40 {
                prob[[y, x]] = 0.35;
            }
        }
        assert!(text_boxes(prob.view(), 50, 50, &SETTINGS).is_empty());
    }

    #[test]
    fn same_line_boxes_go_left_to_right() {
        let prob = map_with(&[(60, 10, 30, 10), (5, 12, 30, 10)], 100, 40);
        let boxes = text_boxes(prob.view(), 100, 40, &SETTINGS);
        assert_eq!(boxes.len(), 2);
        assert!(boxes[0][0].x < boxes[1][0].x);
    }
}
