//! Small plane geometry: the similarity transform that aligns face landmarks to a template, the
//! homography that rectifies a text box, and the minimum-area rectangle around a contour.

/// A point in pixel coordinates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub x: f64,
    pub y: f64,
}

impl Point {
    pub const fn new(x: f64, y: f64) -> Self {
        Point { x, y }
    }

    pub fn distance(self, other: Point) -> f64 {
        ((self.x - other.x).powi(2) + (self.y - other.y).powi(2)).sqrt()
    }
}

/// Least-squares similarity transform (rotation, uniform scale, translation; no reflection)
/// taking `src` onto `dst` — the 2-D case of Umeyama's method. Returns the 2×3 matrix mapping
/// source to destination coordinates.
pub fn similarity_transform(src: &[Point], dst: &[Point]) -> [[f64; 3]; 2] {
    let n = src.len().min(dst.len()).max(1) as f64;
    let mean = |pts: &[Point]| {
        let (sx, sy) = pts.iter().fold((0.0, 0.0), |(ax, ay), p| (ax + p.x, ay + p.y));
        Point::new(sx / n, sy / n)
    };
    let (ms, md) = (mean(src), mean(dst));
    let (mut dot, mut cross, mut var) = (0.0, 0.0, 0.0);
    for (s, d) in src.iter().zip(dst) {
        let (ax, ay, bx, by) = (s.x - ms.x, s.y - ms.y, d.x - md.x, d.y - md.y);
        dot += ax * bx + ay * by;
        cross += ax * by - ay * bx;
        var += ax * ax + ay * ay;
    }
    if var < 1e-12 {
        return [[1.0, 0.0, md.x - ms.x], [0.0, 1.0, md.y - ms.y]];
    }
    // Scaled rotation [[a, -b], [b, a]] minimising the squared error.
    let (a, b) = (dot / var, cross / var);
    [[a, -b, md.x - (a * ms.x - b * ms.y)], [b, a, md.y - (b * ms.x + a * ms.y)]]
}

/// The homography taking the four `from` points to the four `to` points (OpenCV's
/// `getPerspectiveTransform`). `None` when the points are degenerate.
pub fn perspective_transform(from: &[Point; 4], to: &[Point; 4]) -> Option<[[f64; 3]; 3]> {
    // Unknowns h0..h7 (h8 = 1): for each pair, two linear equations.
    let mut a = [[0.0f64; 9]; 8];
    for i in 0..4 {
        let (x, y, u, v) = (from[i].x, from[i].y, to[i].x, to[i].y);
        a[2 * i] = [x, y, 1.0, 0.0, 0.0, 0.0, -u * x, -u * y, u];
        a[2 * i + 1] = [0.0, 0.0, 0.0, x, y, 1.0, -v * x, -v * y, v];
    }
    // Gaussian elimination with partial pivoting on the augmented 8×9 system.
    for col in 0..8 {
        let pivot = (col..8).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col].abs() < 1e-12 {
            return None;
        }
        a.swap(col, pivot);
        let pivot_row = a[col];
        for (row, equation) in a.iter_mut().enumerate() {
            if row != col {
                let factor = equation[col] / pivot_row[col];
                for (value, pivot_value) in equation.iter_mut().zip(pivot_row).skip(col) {
                    *value -= factor * pivot_value;
                }
            }
        }
    }
    let h: Vec<f64> = (0..8).map(|i| a[i][8] / a[i][i]).collect();
    Some([[h[0], h[1], h[2]], [h[3], h[4], h[5]], [h[6], h[7], 1.0]])
}

/// A rectangle of any orientation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RotatedRect {
    pub center: Point,
    /// Side along `axis`.
    pub width: f64,
    /// Side across `axis`.
    pub height: f64,
    /// Unit vector along the `width` side.
    pub axis: Point,
}

impl RotatedRect {
    /// The shorter side.
    pub fn short_side(&self) -> f64 {
        self.width.min(self.height)
    }

    /// The same rectangle with every side moved out by `distance`.
    pub fn expanded(&self, distance: f64) -> Self {
        RotatedRect { width: self.width + 2.0 * distance, height: self.height + 2.0 * distance, ..*self }
    }

    /// Corners ordered top-left, top-right, bottom-right, bottom-left (image coordinates, y down):
    /// the two leftmost points form the left side, each side's upper point first.
    pub fn corners(&self) -> [Point; 4] {
        let (ux, uy) = (self.axis.x * self.width / 2.0, self.axis.y * self.width / 2.0);
        let (vx, vy) = (-self.axis.y * self.height / 2.0, self.axis.x * self.height / 2.0);
        let c = self.center;
        let mut pts = [
            Point::new(c.x - ux - vx, c.y - uy - vy),
            Point::new(c.x + ux - vx, c.y + uy - vy),
            Point::new(c.x + ux + vx, c.y + uy + vy),
            Point::new(c.x - ux + vx, c.y - uy + vy),
        ];
        pts.sort_by(|a, b| a.x.total_cmp(&b.x));
        let (tl, bl) = if pts[1].y > pts[0].y { (pts[0], pts[1]) } else { (pts[1], pts[0]) };
        let (tr, br) = if pts[3].y > pts[2].y { (pts[2], pts[3]) } else { (pts[3], pts[2]) };
        [tl, tr, br, bl]
    }
}

/// The rectangle of least area holding every point (rotating calipers over the convex hull).
/// `None` for an empty set.
pub fn min_area_rect(points: &[Point]) -> Option<RotatedRect> {
    let hull = convex_hull(points);
    match hull.len() {
        0 => None,
        1 => Some(RotatedRect { center: hull[0], width: 0.0, height: 0.0, axis: Point::new(1.0, 0.0) }),
        _ => {
            let mut best: Option<(f64, RotatedRect)> = None;
            for i in 0..hull.len() {
                let (p, q) = (hull[i], hull[(i + 1) % hull.len()]);
                let length = p.distance(q);
                if length < 1e-12 {
                    continue;
                }
                let axis = Point::new((q.x - p.x) / length, (q.y - p.y) / length);
                let (mut lo_u, mut hi_u, mut lo_v, mut hi_v) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
                for h in &hull {
                    let u = h.x * axis.x + h.y * axis.y;
                    let v = -h.x * axis.y + h.y * axis.x;
                    lo_u = lo_u.min(u);
                    hi_u = hi_u.max(u);
                    lo_v = lo_v.min(v);
                    hi_v = hi_v.max(v);
                }
                let area = (hi_u - lo_u) * (hi_v - lo_v);
                if best.as_ref().is_none_or(|(a, _)| area < *a) {
                    let (cu, cv) = ((lo_u + hi_u) / 2.0, (lo_v + hi_v) / 2.0);
                    let center = Point::new(cu * axis.x - cv * axis.y, cu * axis.y + cv * axis.x);
                    best = Some((area, RotatedRect { center, width: hi_u - lo_u, height: hi_v - lo_v, axis }));
                }
            }
            best.map(|(_, rect)| rect)
        }
    }
}

/// Andrew's monotone chain; collinear points dropped.
fn convex_hull(points: &[Point]) -> Vec<Point> {
    let mut pts: Vec<Point> = points.to_vec();
    pts.sort_by(|a, b| a.x.total_cmp(&b.x).then(a.y.total_cmp(&b.y)));
    pts.dedup();
    if pts.len() < 3 {
        return pts;
    }
    let cross = |o: Point, a: Point, b: Point| (a.x - o.x) * (b.y - o.y) - (a.y - o.y) * (b.x - o.x);
    let mut hull: Vec<Point> = Vec::with_capacity(pts.len() * 2);
    for pass in 0..2 {
        let start = hull.len();
        let iter: Box<dyn Iterator<Item = &Point>> =
            if pass == 0 { Box::new(pts.iter()) } else { Box::new(pts.iter().rev()) };
        for &p in iter {
            while hull.len() >= start + 2 && cross(hull[hull.len() - 2], hull[hull.len() - 1], p) <= 0.0 {
                hull.pop();
            }
            hull.push(p);
        }
        hull.pop();
    }
    hull
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn apply(m: &[[f64; 3]; 2], p: Point) -> Point {
        Point::new(m[0][0] * p.x + m[0][1] * p.y + m[0][2], m[1][0] * p.x + m[1][1] * p.y + m[1][2])
    }

    #[test]
    fn similarity_recovers_a_known_transform() {
        let src = [Point::new(0.0, 0.0), Point::new(10.0, 0.0), Point::new(3.0, 7.0), Point::new(-2.0, 5.0)];
        let (s, t) = (1.7f64, 0.4f64);
        let truth = [[s * t.cos(), -s * t.sin(), 5.0], [s * t.sin(), s * t.cos(), -3.0]];
        let dst: Vec<Point> = src.iter().map(|&p| apply(&truth, p)).collect();
        let m = similarity_transform(&src, &dst);
        for r in 0..2 {
            for c in 0..3 {
                assert!((m[r][c] - truth[r][c]).abs() < 1e-9, "{m:?}");
            }
        }
    }

    #[test]
    fn perspective_maps_the_corners() {
        let from = [Point::new(10.0, 5.0), Point::new(90.0, 15.0), Point::new(85.0, 40.0), Point::new(12.0, 30.0)];
        let to = [Point::new(0.0, 0.0), Point::new(80.0, 0.0), Point::new(80.0, 25.0), Point::new(0.0, 25.0)];
        let h = perspective_transform(&from, &to).unwrap();
        for (f, t) in from.iter().zip(&to) {
            let w = h[2][0] * f.x + h[2][1] * f.y + h[2][2];
            let x = (h[0][0] * f.x + h[0][1] * f.y + h[0][2]) / w;
            let y = (h[1][0] * f.x + h[1][1] * f.y + h[1][2]) / w;
            assert!((x - t.x).abs() < 1e-6 && (y - t.y).abs() < 1e-6);
        }
        let line = [Point::new(0.0, 0.0); 4];
        assert!(perspective_transform(&line, &to).is_none());
    }

    #[test]
    fn min_area_rect_of_an_axis_aligned_box() {
        let pts = [Point::new(2.0, 3.0), Point::new(12.0, 3.0), Point::new(12.0, 7.0), Point::new(2.0, 7.0)];
        let rect = min_area_rect(&pts).unwrap();
        assert!((rect.width * rect.height - 40.0).abs() < 1e-9);
        assert!((rect.short_side() - 4.0).abs() < 1e-9);
        let [tl, tr, br, bl] = rect.corners();
        assert_eq!((tl, tr, br, bl), (pts[0], pts[1], pts[2], pts[3]));
    }

    proptest! {
        #[test]
        fn min_area_rect_holds_every_point(points in proptest::collection::vec((-50.0f64..50.0, -50.0f64..50.0), 1..40)) {
            let pts: Vec<Point> = points.iter().map(|&(x, y)| Point::new(x, y)).collect();
            let rect = min_area_rect(&pts).unwrap();
            for p in &pts {
                let (dx, dy) = (p.x - rect.center.x, p.y - rect.center.y);
                let u = (dx * rect.axis.x + dy * rect.axis.y).abs();
                let v = (-dx * rect.axis.y + dy * rect.axis.x).abs();
                prop_assert!(u <= rect.width / 2.0 + 1e-6 && v <= rect.height / 2.0 + 1e-6);
            }
        }
    }
}
