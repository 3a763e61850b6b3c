//! One timer thread per process serves every wait of this crate: the sleeps between polls
//! under `ConflictPolicy::Wait` and between completion retries, and the waits between the lease
//! renewals of every call. The renewals themselves are small tasks ([`spawn`]) polled by a pool
//! of at most [`MAX_WORKERS`] threads, started as needed: a store whose calls block (the file
//! store's `fsync`) then never delays a timer, and one slow store call never holds up every
//! other renewal. No thread is started per sleep or per call. The threads start on first use and
//! again in a child forked without `exec` (which inherits the parent's state but not its
//! threads).
//!
//! Tasks are polled on those threads, so a store's futures must not need the caller's
//! executor: the same rule the sync API (`block_on`) already sets. A panic in a task ends that
//! task only.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::{Duration, Instant};

/// A task's future.
pub(crate) type TaskFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// The longest the timer thread waits without looking at its sleeps again.
const IDLE_TICK: Duration = Duration::from_secs(5);

/// The longest sleep: longer ones (a `poll_interval` of `Duration::MAX`) are cut to this, as
/// `Instant + Duration::MAX` overflows.
const MAX_SLEEP: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// The most threads that poll tasks at once.
pub(crate) const MAX_WORKERS: usize = 4;

struct Timer {
    state: Mutex<State>,
    wakeup: Condvar,
    pool: Mutex<Pool>,
    work: Condvar,
}

#[derive(Default)]
struct State {
    /// Pending sleeps by deadline (the id breaks ties).
    sleeps: BTreeMap<(Instant, u64), Waker>,
    next_id: u64,
    /// Whether the thread waits on the condvar, and until when. A caller notifies it only when
    /// it must wake earlier: most calls cost no system call.
    parked: Option<Instant>,
}

/// The tasks woken and waiting to be polled, and the threads that poll them.
#[derive(Default)]
struct Pool {
    ready: VecDeque<Arc<Task>>,
    workers: usize,
    idle: usize,
}

/// The timer of this process: `(process id, timer)`, restarted after a `fork`.
static TIMER: Mutex<Option<(u32, Arc<Timer>)>> = Mutex::new(None);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The running timer, started on first use; `None` when no thread could be started.
fn timer() -> Option<Arc<Timer>> {
    let pid = std::process::id();
    let mut slot = lock(&TIMER);
    if let Some((owner, t)) = &*slot {
        if *owner == pid {
            return Some(Arc::clone(t));
        }
    }
    let t = Arc::new(Timer {
        state: Mutex::new(State::default()),
        wakeup: Condvar::new(),
        pool: Mutex::new(Pool::default()),
        work: Condvar::new(),
    });
    let run = Arc::clone(&t);
    thread::Builder::new()
        .name("idempotency-timer".into())
        .spawn(move || run.run())
        .ok()?;
    *slot = Some((pid, Arc::clone(&t)));
    Some(t)
}

impl Timer {
    /// The timer thread: fires due sleeps and waits for the next deadline.
    fn run(&self) {
        let mut state = lock(&self.state);
        loop {
            let now = Instant::now();
            let mut due = Vec::new();
            while let Some(entry) = state.sleeps.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                due.push(entry.remove());
            }
            if due.is_empty() {
                // Wake at the next deadline, and at least every `IDLE_TICK`: a sleep that ends
                // later than the planned wake-up then needs no notification, and a call whose
                // renewal is registered and cancelled before its first deadline (most calls)
                // costs the thread nothing.
                let tick = now.checked_add(IDLE_TICK).unwrap_or(now);
                let at = state.sleeps.keys().next().map_or(tick, |k| k.0.min(tick));
                state.parked = Some(at);
                let (s, _) = self
                    .wakeup
                    .wait_timeout(state, at.saturating_duration_since(now))
                    .unwrap_or_else(PoisonError::into_inner);
                state = s;
                state.parked = None;
                continue;
            }
            drop(state);
            for waker in due {
                waker.wake();
            }
            state = lock(&self.state);
        }
    }

    /// Wakes the thread if it waits past `at`.
    fn notify(&self, state: &State, at: Instant) {
        if state.parked.is_some_and(|until| at < until) {
            self.wakeup.notify_one();
        }
    }

    /// Queues a woken task for a worker, starting one when none is idle and fewer than
    /// [`MAX_WORKERS`] run. Without any worker (none could be started) the task waits.
    fn push(self: &Arc<Self>, task: Arc<Task>) {
        let mut pool = lock(&self.pool);
        pool.ready.push_back(task);
        if pool.idle > 0 {
            self.work.notify_one();
        } else if pool.workers < MAX_WORKERS {
            let timer = Arc::clone(self);
            let started = thread::Builder::new()
                .name("idempotency-renew".into())
                .spawn(move || timer.work());
            if started.is_ok() {
                pool.workers += 1;
            } else if pool.workers == 0 {
                tracing::warn!(target: "idempotency", "no thread for lease renewals");
            }
        }
    }

    /// A worker: polls woken tasks, one at a time.
    fn work(&self) {
        let mut pool = lock(&self.pool);
        loop {
            if let Some(task) = pool.ready.pop_front() {
                drop(pool);
                task.run();
                pool = lock(&self.pool);
                continue;
            }
            pool.idle += 1;
            pool = self.work.wait(pool).unwrap_or_else(PoisonError::into_inner);
            pool.idle -= 1;
        }
    }
}

/// A future that completes at a deadline, woken by the timer thread. Works under any executor
/// (or none).
pub(crate) struct Sleep {
    deadline: Instant,
    /// The timer and this sleep's entry in it, once registered.
    entry: Option<(Arc<Timer>, u64)>,
}

/// A future that completes after `d` (monotonic time).
pub(crate) fn sleep(d: Duration) -> Sleep {
    let now = Instant::now();
    Sleep {
        deadline: now.checked_add(d.min(MAX_SLEEP)).unwrap_or(now),
        entry: None,
    }
}

impl Future for Sleep {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if Instant::now() >= this.deadline {
            this.deregister();
            return Poll::Ready(());
        }
        let (timer, id) = match &this.entry {
            Some((t, id)) => (Arc::clone(t), Some(*id)),
            // A task's sleep (a lease renewal) uses its task's timer, which needs no look-up
            // (and no `getpid`) per call; any other sleep finds this process's timer.
            None => match POLLING
                .try_with(|p| p.borrow().clone())
                .ok()
                .flatten()
                .or_else(timer)
            {
                Some(t) => (t, None),
                None => {
                    // No timer thread could be started: wait here instead of failing.
                    thread::sleep(this.deadline.saturating_duration_since(Instant::now()));
                    return Poll::Ready(());
                }
            },
        };
        let mut state = lock(&timer.state);
        match id.and_then(|id| state.sleeps.get_mut(&(this.deadline, id))) {
            Some(waker) => {
                if !waker.will_wake(cx.waker()) {
                    waker.clone_from(cx.waker());
                }
            }
            None => {
                // First poll (or woken early by someone else after the entry fired).
                let id = state.next_id;
                state.next_id += 1;
                state.sleeps.insert((this.deadline, id), cx.waker().clone());
                timer.notify(&state, this.deadline);
                drop(state);
                this.entry = Some((timer, id));
            }
        }
        Poll::Pending
    }
}

impl Sleep {
    fn deregister(&mut self) {
        if let Some((timer, id)) = self.entry.take() {
            lock(&timer.state).sleeps.remove(&(self.deadline, id));
        }
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        self.deregister();
    }
}

thread_local! {
    /// The timer of the task this thread is polling ([`Task::run`]), for its sleeps.
    static POLLING: std::cell::RefCell<Option<Arc<Timer>>> = const { std::cell::RefCell::new(None) };
}

/// A future polled by the workers ([`spawn`]).
struct Task {
    timer: Arc<Timer>,
    future: Mutex<Option<TaskFuture>>,
    /// Set when woken until polled, so a task is queued once however often it is woken.
    queued: AtomicBool,
    /// Set by [`TaskHandle`]'s drop: the future is dropped at its next opportunity.
    cancelled: AtomicBool,
    /// Whether the future may be dropped whenever it is not being polled (see [`TaskHandle`]).
    idle: Arc<dyn Idle>,
}

/// Answers whether a task's future may be dropped whenever it is not being polled.
pub(crate) trait Idle: Send + Sync {
    /// `true` when dropping the future now cuts nothing off.
    fn is_idle(&self) -> bool;
}

impl Task {
    /// Polls the future once (unless cancelled while idle); drops it when it is done,
    /// panicked, or cancelled and idle (before or after this poll).
    fn run(self: &Arc<Self>) {
        self.queued.store(false, Ordering::SeqCst);
        let mut slot = lock(&self.future);
        let Some(fut) = slot.as_mut() else { return };
        let cancelled = || self.cancelled.load(Ordering::SeqCst) && self.idle.is_idle();
        let done = cancelled() || {
            let waker = Waker::from(Arc::clone(self));
            let mut cx = Context::from_waker(&waker);
            let outer = POLLING
                .try_with(|p| p.replace(Some(Arc::clone(&self.timer))))
                .ok()
                .flatten();
            // A panic in a task (a store's future) ends that task, never its worker.
            let polled = catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(&mut cx)));
            let _ = POLLING.try_with(|p| *p.borrow_mut() = outer);
            !matches!(polled, Ok(Poll::Pending)) || cancelled()
        };
        if done {
            *slot = None;
        }
    }
}

impl Wake for Task {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::SeqCst) {
            self.timer.push(Arc::clone(self));
        }
    }
}

/// Owns a task started by [`spawn`]; dropping it cancels the task without blocking: the future
/// is dropped at once when [`Idle::is_idle`] says it may be (it sleeps between steps), else by
/// a worker when its current step ends (a store call is never cut off mid-flight).
pub(crate) struct TaskHandle(Arc<Task>);

impl std::fmt::Debug for TaskHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskHandle").finish_non_exhaustive()
    }
}

impl Drop for TaskHandle {
    fn drop(&mut self) {
        let task = &self.0;
        task.cancelled.store(true, Ordering::SeqCst);
        // Never wait for a worker: if one is polling the task now, it drops the future after
        // this poll.
        if let Ok(mut slot) = task.future.try_lock() {
            if task.idle.is_idle() {
                *slot = None;
                return;
            }
        }
        Arc::clone(task).wake();
    }
}

/// Starts `fut` as a task of the pool and polls it once on the calling thread (so a task that
/// starts with a sleep costs no thread a wake-up). `idle` answers whether
/// the future may be dropped at any moment it is not being polled (see [`TaskHandle`]).
/// `None` when no timer thread could be started.
pub(crate) fn spawn(fut: TaskFuture, idle: Arc<dyn Idle>) -> Option<TaskHandle> {
    let task = Arc::new(Task {
        timer: timer()?,
        future: Mutex::new(Some(fut)),
        queued: AtomicBool::new(false),
        cancelled: AtomicBool::new(false),
        idle,
    });
    task.run();
    Some(TaskHandle(task))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_sleep_of_duration_max_does_not_panic() {
        // `ConflictPolicy::Wait { timeout: Duration::MAX }` with `poll_interval(Duration::MAX)`
        // sleeps this long: it must wait (Pending), not overflow `Instant + Duration`.
        let mut s = std::pin::pin!(sleep(Duration::MAX));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(s.as_mut().poll(&mut cx).is_pending());
        assert!(s.as_mut().poll(&mut cx).is_pending());
    }

    /// Records the order in which sleeps are woken.
    struct Record(u64, std::sync::mpsc::Sender<u64>);

    impl Wake for Record {
        fn wake(self: Arc<Self>) {
            let _ = self.1.send(self.0);
        }
    }

    #[test]
    fn sleeps_are_woken_in_deadline_order_by_the_timer_thread() {
        let (tx, rx) = std::sync::mpsc::channel();
        let mut sleeps: Vec<_> = [30_u64, 10, 20]
            .into_iter()
            .map(|ms| {
                let waker = Waker::from(Arc::new(Record(ms, tx.clone())));
                let mut s = Box::pin(sleep(Duration::from_millis(ms)));
                assert!(s
                    .as_mut()
                    .poll(&mut Context::from_waker(&waker))
                    .is_pending());
                s
            })
            .collect();
        let woken: Vec<u64> = (0..3).map(|_| rx.recv().unwrap()).collect();
        assert_eq!(woken, [10, 20, 30]);
        for s in &mut sleeps {
            assert!(s
                .as_mut()
                .poll(&mut Context::from_waker(Waker::noop()))
                .is_ready());
        }
    }

    /// Sets its flag when dropped.
    struct DropFlag(Arc<AtomicBool>);

    impl Drop for DropFlag {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    struct Always(bool);

    impl Idle for Always {
        fn is_idle(&self) -> bool {
            self.0
        }
    }

    #[test]
    fn a_cancelled_idle_task_is_dropped_at_once() {
        let dropped = Arc::new(AtomicBool::new(false));
        let flag = DropFlag(Arc::clone(&dropped));
        let handle = spawn(
            Box::pin(async move {
                let _flag = flag;
                sleep(Duration::from_secs(60)).await;
            }),
            Arc::new(Always(true)),
        )
        .unwrap();
        assert!(!dropped.load(Ordering::SeqCst));
        drop(handle);
        assert!(
            dropped.load(Ordering::SeqCst),
            "dropped by the cancel itself"
        );
    }

    #[test]
    fn a_cancelled_busy_task_finishes_its_step_first() {
        let dropped = Arc::new(AtomicBool::new(false));
        let flag = DropFlag(Arc::clone(&dropped));
        let (step_done, finish) = std::sync::mpsc::channel::<()>();
        let (tx, done) = std::sync::mpsc::channel();
        let handle = spawn(
            Box::pin(async move {
                let _flag = flag;
                // A "store call" that ends when the test says so.
                sleep(Duration::from_millis(50)).await;
                let _ = finish.recv();
                let _ = tx.send(());
            }),
            Arc::new(Always(false)),
        )
        .unwrap();
        drop(handle);
        assert!(!dropped.load(Ordering::SeqCst), "not cut off mid-step");
        step_done.send(()).unwrap();
        done.recv().unwrap();
        // A worker drops the finished future right after this poll.
        let give_up = Instant::now() + Duration::from_secs(10);
        while !dropped.load(Ordering::SeqCst) && Instant::now() < give_up {
            thread::yield_now();
        }
        assert!(dropped.load(Ordering::SeqCst));
    }

    #[test]
    fn a_dropped_sleep_leaves_no_entry() {
        let mut s = Box::pin(sleep(Duration::from_secs(60)));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(s.as_mut().poll(&mut cx).is_pending());
        let (t, id) = s.entry.clone().unwrap();
        let deadline = s.deadline;
        drop(s);
        assert!(!lock(&t.state).sleeps.contains_key(&(deadline, id)));
    }
}
