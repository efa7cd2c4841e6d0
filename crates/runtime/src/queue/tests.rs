#![allow(clippy::unwrap_used)]
use std::sync::atomic::{AtomicU32, Ordering};

use tokio::sync::Semaphore;

use super::*;
use crate::wait::wait_until;

/// A job without generations.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
struct Note {
    blob: u32,
    n: u32,
}

impl Job for Note {
    type Key = Self;
    fn key(&self) -> Self {
        self.clone()
    }
    fn file_stem(&self) -> String {
        format!("{}-{}", self.blob, self.n)
    }
}

/// A job coalesced by name, newest generation first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Versioned {
    name: String,
    generation: u64,
}

fn v(name: &str, generation: u64) -> Versioned {
    Versioned {
        name: name.into(),
        generation,
    }
}

impl Job for Versioned {
    type Key = String;
    fn key(&self) -> String {
        self.name.clone()
    }
    fn file_stem(&self) -> String {
        format!("{}-{:020}", self.name, self.generation)
    }
    fn generation(&self) -> u64 {
        self.generation
    }
}

/// Records attempts and live task files; fails the first `fail_first` attempts; with a gate,
/// each attempt waits for a permit after it is recorded.
#[derive(Debug)]
struct Recorder<J> {
    fail_first: u32,
    attempts: AtomicU32,
    gate: Option<Semaphore>,
    started: Mutex<Vec<J>>,
    /// `file_stem` → times recorded minus times removed.
    live: Mutex<HashMap<String, i32>>,
}

impl<J> Recorder<J> {
    fn new(fail_first: u32, gated: bool) -> Self {
        Self {
            fail_first,
            attempts: AtomicU32::new(0),
            gate: gated.then(|| Semaphore::new(0)),
            started: Mutex::new(Vec::new()),
            live: Mutex::new(HashMap::new()),
        }
    }

    fn live(&self) -> Vec<String> {
        let mut live: Vec<String> = self.live.lock().keys().cloned().collect();
        live.sort();
        live
    }
}

impl<J: Job> Executor for Recorder<J> {
    type Job = J;

    async fn execute(&self, job: &J) -> Attempt {
        self.started.lock().push(job.clone());
        if let Some(gate) = &self.gate {
            gate.acquire().await.unwrap().forget();
        }
        if self.attempts.fetch_add(1, Ordering::SeqCst) < self.fail_first {
            Attempt::Retry("not yet".into())
        } else {
            Attempt::Done
        }
    }

    fn recorded(&self, job: &J) {
        *self.live.lock().entry(job.file_stem()).or_default() += 1;
    }

    fn removed(&self, job: &J) {
        let mut live = self.live.lock();
        let n = live.entry(job.file_stem()).or_default();
        *n -= 1;
        if *n == 0 {
            live.remove(&job.file_stem());
        }
    }
}

fn open<J: Job>(dir: &Path, recorder: Recorder<J>) -> Queue<Recorder<J>> {
    let config = QueueConfig {
        concurrency: 2,
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
    };
    Queue::open("test", dir, recorder, config, QueueMetrics::default()).unwrap()
}

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

async fn drain<E: Executor>(q: &Queue<E>) {
    wait_until(Duration::from_secs(10), "queue drained", || async {
        q.depth() == 0
    })
    .await
    .unwrap();
}

/// A gated queue in `dir`, running, with an attempt at `v("a", 1)` started and held.
async fn running_a1(
    dir: &Path,
) -> (
    Queue<Recorder<Versioned>>,
    CancellationToken,
    tokio::task::JoinHandle<()>,
) {
    let q = open(dir, Recorder::new(0, true));
    let token = CancellationToken::new();
    let run = tokio::spawn(q.clone().run(token.clone()));
    assert_eq!(q.enqueue_now(&[v("a", 1)]).unwrap(), 1);
    wait_until(Duration::from_secs(10), "attempt started", || async {
        q.executor().started.lock().len() == 1
    })
    .await
    .unwrap();
    (q, token, run)
}

#[test]
fn backoff_grows_and_is_capped() {
    let c = QueueConfig {
        concurrency: 1,
        initial_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(1),
    };
    let b1 = c.backoff(1);
    assert!(b1 >= Duration::from_millis(80) && b1 <= Duration::from_millis(120));
    let b3 = c.backoff(3);
    assert!(b3 >= Duration::from_millis(320) && b3 <= Duration::from_millis(480));
    assert!(c.backoff(30) <= Duration::from_millis(1200));
    assert!(c.backoff(40) <= Duration::from_millis(1200));
}

#[test]
fn hashed_stems_hash_newline_terminated_parts() {
    assert_eq!(
        hashed_stem(["a", "b"]),
        "911169ddaaf146aff539f58c26c489af3b892dff0fe283c1c264c65ae5aa59a2"
    );
}

#[tokio::test]
async fn tasks_persist_hook_retry_and_finish() {
    let dir = tempfile::tempdir().unwrap();
    let qdir = dir.path().join("queue");
    let jobs = [Note { blob: 7, n: 1 }, Note { blob: 7, n: 2 }];
    {
        let q = open(&qdir, Recorder::new(0, false));
        assert!(q.enqueue(&jobs[0]).unwrap());
        assert!(!q.enqueue(&jobs[0]).unwrap());
        assert_eq!(q.enqueue_now(&jobs).unwrap(), 1);
        assert_eq!(q.depth(), 2);
        assert_eq!(q.executor().live(), ["7-1", "7-2"]);
        q.abandon(&jobs[0]);
        q.abandon(&jobs[1]);
        assert!(q.executor().live().is_empty(), "hooks are balanced");
        assert!(files(&qdir).is_empty());
        q.enqueue_now(&jobs).unwrap();
    }
    // Leftovers of a crash, and a task under an old name.
    fs::write(qdir.join("x.tmp"), b"partial").unwrap();
    fs::write(qdir.join("bad.task"), b"not json").unwrap();
    fs::rename(qdir.join("7-1.task"), qdir.join("old-name.task")).unwrap();

    // Reopened: both tasks are back, due at once; they fail three times, then finish.
    let q = open(&qdir, Recorder::<Note>::new(3, false));
    assert_eq!(q.depth(), 2);
    assert_eq!(files(&qdir), ["7-1.task", "7-2.task"]);
    assert_eq!(q.executor().live(), ["7-1", "7-2"]);
    let token = CancellationToken::new();
    let run = tokio::spawn(q.clone().run(token.clone()));
    drain(&q).await;
    token.cancel();
    run.await.unwrap();
    assert_eq!(q.executor().attempts.load(Ordering::SeqCst), 5);
    assert!(q.executor().live().is_empty());
    assert!(files(&qdir).is_empty(), "task files removed");
}

#[test]
fn open_keeps_the_newest_generation_and_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    for generation in [5, 9, 7] {
        let job = v("a", generation);
        let body = serde_json::to_vec(&job).unwrap();
        write_file(&task_path(dir.path(), &job), &body).unwrap();
    }
    fs::write(dir.path().join("x.tmp"), b"partial").unwrap();
    fs::write(dir.path().join("bad.task"), b"not json").unwrap();
    let q = open(dir.path(), Recorder::<Versioned>::new(0, false));
    assert_eq!(q.depth(), 1);
    let newest = v("a", 9).file_stem();
    assert_eq!(files(dir.path()), [format!("{newest}.task")]);
    assert_eq!(q.executor().live(), [newest]);
}

#[tokio::test]
async fn newer_generations_supersede_pending_and_running_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let (q, token, run) = running_a1(dir.path()).await;

    // Generation 2 replaces 1, whose running attempt keeps its file; older ones are ignored.
    assert_eq!(q.enqueue_now(&[v("a", 2)]).unwrap(), 1);
    assert_eq!(q.enqueue_now(&[v("a", 1), v("a", 2)]).unwrap(), 0);
    assert_eq!(q.depth(), 1);
    let stems =
        |gens: &[u64]| -> Vec<String> { gens.iter().map(|g| v("a", *g).file_stem()).collect() };
    assert_eq!(q.executor().live(), stems(&[1, 2]));
    // Generation 3 replaces 2, which is not running: its file goes at once.
    assert!(q.enqueue(&v("a", 3)).unwrap());
    assert_eq!(q.executor().live(), stems(&[1, 3]));
    assert_eq!(files(dir.path()).len(), 2);
    // Not yet activated: only the attempt at 1 finishes.
    q.executor().gate.as_ref().unwrap().add_permits(1);
    wait_until(
        Duration::from_secs(10),
        "superseded file removed",
        || async { q.executor().live() == stems(&[3]) },
    )
    .await
    .unwrap();
    assert_eq!(q.depth(), 1);
    q.activate(&v("a", 3));
    q.executor().gate.as_ref().unwrap().add_permits(1);
    drain(&q).await;
    token.cancel();
    run.await.unwrap();
    let started: Vec<u64> = q
        .executor()
        .started
        .lock()
        .iter()
        .map(|j| j.generation)
        .collect();
    assert_eq!(started, [1, 3]);
    assert!(q.executor().live().is_empty());
    assert!(files(dir.path()).is_empty());
}

#[tokio::test]
async fn abandoning_forgets_a_superseded_running_task_too() {
    let dir = tempfile::tempdir().unwrap();
    let (q, token, run) = running_a1(dir.path()).await;
    q.enqueue_now(&[v("a", 2)]).unwrap();
    q.abandon(&v("a", 2));
    assert_eq!(q.depth(), 0);
    assert!(q.executor().live().is_empty());
    assert!(files(dir.path()).is_empty());
    q.executor().gate.as_ref().unwrap().add_permits(1);
    wait_until(Duration::from_secs(10), "attempt finished", || async {
        q.inner.metrics.completed.get() == 1
    })
    .await
    .unwrap();
    token.cancel();
    run.await.unwrap();
    assert!(q.executor().live().is_empty(), "no hook runs twice");
}

#[test]
fn the_same_task_recorded_concurrently_is_recorded_once() {
    // Two uploads of one blob commit at the same moment: both record its task.
    let dir = tempfile::tempdir().unwrap();
    let q = open(dir.path(), Recorder::<Note>::new(0, false));
    let job = Note { blob: 7, n: 1 };
    let created: Vec<usize> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..16)
            .map(|_| s.spawn(|| q.enqueue_now(std::slice::from_ref(&job)).unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(created.iter().sum::<usize>() >= 1);
    assert_eq!(files(dir.path()), ["7-1.task"]);
}
