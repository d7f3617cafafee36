//! Work split over scoped threads within one step of the pipeline task (linkage per
//! partition, a checkpoint round's partitions): the step waits for all of it.

/// Runs `f` on each of `items`, the first on this thread and each other on a scoped thread of
/// its own; returns the results in the items' order. A panic on a thread goes on here, as it
/// would have on this thread.
pub(crate) fn on_threads<T: Send, R: Send>(items: Vec<T>, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    let f = &f;
    let mut items = items.into_iter();
    let Some(first) = items.next() else {
        return Vec::new();
    };
    std::thread::scope(|scope| {
        let spawned: Vec<_> = items.map(|t| scope.spawn(move || f(t))).collect();
        let mut out = Vec::with_capacity(spawned.len() + 1);
        out.push(f(first));
        for h in spawned {
            match h.join() {
                Ok(r) => out.push(r),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_in_the_items_order_and_each_item_runs_once() {
        let here = std::thread::current().id();
        let out = on_threads((0..5).collect(), |i: u32| {
            (i * 10, std::thread::current().id())
        });
        let values: Vec<u32> = out.iter().map(|(v, _)| *v).collect();
        assert_eq!(values, [0, 10, 20, 30, 40]);
        assert_eq!(out[0].1, here, "the first item runs on the calling thread");
        assert!(
            out[1..].iter().all(|(_, t)| *t != here),
            "the others on threads"
        );
        assert!(on_threads(Vec::<u32>::new(), |i| i).is_empty());
    }

    #[test]
    fn a_panic_on_a_thread_goes_on_in_the_caller() {
        let r = std::panic::catch_unwind(|| {
            on_threads(vec![1, 2], |i: u32| {
                assert!(i != 2, "item {i}");
                i
            })
        });
        assert!(r.is_err());
    }
}
