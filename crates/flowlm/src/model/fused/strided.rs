//! Matrices read from a slice through strides, and single-threaded gemm products into a
//! strided destination: the pieces that attention's (batch row, head) tasks and the blocks of a
//! stored-weight product each run on their own thread of the pool.

/// A matrix read from a slice: element (i, j) at `i * row_stride + j * column_stride`.
#[derive(Clone, Copy)]
pub(super) struct Matrix<'a> {
    pub(super) values: &'a [f32],
    rows: usize,
    columns: usize,
    row_stride: usize,
    column_stride: usize,
}

impl<'a> Matrix<'a> {
    pub(super) fn row_major(values: &'a [f32], rows: usize, columns: usize) -> Self {
        assert_eq!(values.len(), rows * columns, "a row-major matrix's length");
        Self::strided(values, rows, columns, columns, 1)
    }

    /// # Panics
    /// When an element falls outside `values`, so that products read inside it only.
    pub(super) fn strided(
        values: &'a [f32],
        rows: usize,
        columns: usize,
        row_stride: usize,
        column_stride: usize,
    ) -> Self {
        if rows > 0 && columns > 0 {
            let last = (rows - 1) * row_stride + (columns - 1) * column_stride;
            assert!(last < values.len(), "a strided matrix inside its values");
        }
        Self {
            values,
            rows,
            columns,
            row_stride,
            column_stride,
        }
    }

    pub(super) fn transposed(self) -> Self {
        Self {
            rows: self.columns,
            columns: self.rows,
            row_stride: self.column_stride,
            column_stride: self.row_stride,
            ..self
        }
    }
}

/// A product's `[rows, columns]` output: `rows` runs of `columns` elements, `row_stride` apart.
pub(super) struct Destination {
    pub(super) start: *mut f32,
    pub(super) rows: usize,
    pub(super) columns: usize,
    pub(super) row_stride: usize,
}

// SAFETY: a destination only carries an address; whoever writes through it (`multiply_into`)
// guarantees that nothing else touches those elements meanwhile, whichever thread it runs on.
unsafe impl Send for Destination {}
unsafe impl Sync for Destination {}

impl Destination {
    /// The columns `columns` of every row, addressed in this destination's buffer.
    pub(super) fn columns(&self, columns: std::ops::Range<usize>) -> Self {
        assert!(
            columns.end <= self.columns,
            "columns inside the destination"
        );
        Self {
            start: self.start.wrapping_add(columns.start),
            rows: self.rows,
            columns: columns.len(),
            row_stride: self.row_stride,
        }
    }
}

/// `out` (row-major `[a.rows, b.columns]`, every element written) = `a @ b`, on this thread:
/// the callers already spread their work over the pool.
pub(super) fn multiply(out: &mut [f32], a: Matrix, b: Matrix) {
    assert_eq!(out.len(), a.rows * b.columns, "a product's output length");
    let destination = Destination {
        start: out.as_mut_ptr(),
        rows: a.rows,
        columns: b.columns,
        row_stride: b.columns,
    };
    // SAFETY: `out` is borrowed mutably for the call and holds all `rows * columns` elements.
    unsafe { multiply_into(destination, a, b) }
}

/// [`multiply`] into `out`.
///
/// # Safety
/// `out` addresses `rows` runs of `columns` writable elements that nothing else reads or
/// writes during the call.
pub(super) unsafe fn multiply_into(out: Destination, a: Matrix, b: Matrix) {
    assert_eq!(a.columns, b.rows, "inner dimensions of a product");
    assert_eq!(
        (out.rows, out.columns),
        (a.rows, b.columns),
        "a product's shape"
    );
    let (m, n, k) = (a.rows, b.columns, a.columns);
    // SAFETY: `a` and `b` read inside their slices (checked when they were built); gemm writes
    // every element of `out` (`read_dst` is false) and nothing else, as the caller guarantees.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.start,
            1,
            out.row_stride as isize,
            false,
            a.values.as_ptr(),
            a.column_stride as isize,
            a.row_stride as isize,
            b.values.as_ptr(),
            b.column_stride as isize,
            b.row_stride as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}
