//! Where the loads' helper work runs: on rayon's pool with the `parallel` feature (the
//! default), on the calling thread without it. The results and errors are the same either
//! way; only the wall time differs. One switch, so no load needs its own `cfg`.

/// A scope whose spawned work has finished when [`in_place_scope`] returns.
#[cfg(feature = "parallel")]
pub(crate) struct Scope<'a, 'scope>(&'a rayon::Scope<'scope>);

#[cfg(feature = "parallel")]
impl<'scope> Scope<'_, 'scope> {
    /// Runs `work` on the pool, concurrently with the rest of the scope.
    pub(crate) fn spawn(&self, work: impl FnOnce() + Send + 'scope) {
        self.0.spawn(move |_| work());
    }
}

/// Runs `op` on the calling thread with a scope to spawn helper work into (rayon's
/// `in_place_scope`: a panic in spawned work is raised here, not swallowed).
#[cfg(feature = "parallel")]
pub(crate) fn in_place_scope<'scope, R>(op: impl FnOnce(&Scope<'_, 'scope>) -> R) -> R {
    rayon::in_place_scope(|s| op(&Scope(s)))
}

/// Runs `work` on the pool without waiting for it (used to free large values off the
/// caller's path).
#[cfg(feature = "parallel")]
pub(crate) fn detach(work: impl FnOnce() + Send + 'static) {
    rayon::spawn(work);
}

/// `f` of each item, in order; on the pool, each item a task of its own (for items of
/// much work each, such as a large archive's records).
#[cfg(feature = "parallel")]
pub(crate) fn map_each<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync + Send) -> Vec<R> {
    use rayon::prelude::*;
    items.par_iter().with_max_len(1).map(f).collect()
}

/// `map` of each `piece`-byte piece of `data`, folded in order with `combine`; on the
/// pool, a piece per task. `None` for empty `data`.
#[cfg(feature = "parallel")]
pub(crate) fn map_pieces<R: Send>(
    data: &[u8],
    piece: usize,
    map: impl Fn(&[u8]) -> R + Sync + Send,
    combine: impl Fn(R, R) -> R + Sync + Send,
) -> Option<R> {
    use rayon::prelude::*;
    // Indexed: rayon combines adjacent results, in order.
    data.par_chunks(piece).map(map).reduce_with(combine)
}

/// Without the `parallel` feature, spawned work runs at once, on the calling thread.
#[cfg(not(feature = "parallel"))]
pub(crate) struct Scope<'a, 'scope>(std::marker::PhantomData<(&'a (), &'scope ())>);

#[cfg(not(feature = "parallel"))]
impl<'scope> Scope<'_, 'scope> {
    pub(crate) fn spawn(&self, work: impl FnOnce() + Send + 'scope) {
        work();
    }
}

#[cfg(not(feature = "parallel"))]
pub(crate) fn in_place_scope<'scope, R>(op: impl FnOnce(&Scope<'_, 'scope>) -> R) -> R {
    op(&Scope(std::marker::PhantomData))
}

#[cfg(not(feature = "parallel"))]
pub(crate) fn detach(work: impl FnOnce() + Send + 'static) {
    work();
}

#[cfg(not(feature = "parallel"))]
pub(crate) fn map_each<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync + Send) -> Vec<R> {
    items.iter().map(f).collect()
}

#[cfg(not(feature = "parallel"))]
pub(crate) fn map_pieces<R: Send>(
    data: &[u8],
    piece: usize,
    map: impl Fn(&[u8]) -> R + Sync + Send,
    combine: impl Fn(R, R) -> R + Sync + Send,
) -> Option<R> {
    data.chunks(piece).map(map).reduce(combine)
}
