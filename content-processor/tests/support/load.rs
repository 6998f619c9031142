//! Clients submitting at a steady pace, for tests that break something under load.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use uuid::Uuid;

use super::Api;

/// Clients submitting at a steady pace until stopped; what each request got.
pub struct Load {
    stop: Arc<AtomicBool>,
    acknowledged: Arc<Mutex<Vec<Uuid>>>,
    unavailable: Arc<Mutex<usize>>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    pub fn start(api: &Api, workers: usize) -> Load {
        let load = Load { stop: Default::default(), acknowledged: Default::default(), unavailable: Default::default(), workers: Vec::new() };
        let workers = (0..workers)
            .map(|worker| {
                let (api, stop, acknowledged, unavailable) = (api.clone(), load.stop.clone(), load.acknowledged.clone(), load.unavailable.clone());
                tokio::spawn(async move {
                    let mut i = 0;
                    while !stop.load(Ordering::Relaxed) {
                        i += 1;
                        let content = if i % 4 == 0 { format!("w{worker}") } else { format!("worker {worker} item {i}") };
                        let (status, body) = api.submit(&content).await;
                        match status {
                            StatusCode::ACCEPTED => acknowledged.lock().unwrap().push(body["id"].as_str().unwrap().parse().unwrap()),
                            StatusCode::SERVICE_UNAVAILABLE => *unavailable.lock().unwrap() += 1,
                            other => panic!("unexpected answer {other}: {body}"),
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                })
            })
            .collect();
        Load { workers, ..load }
    }

    pub fn accepted(&self) -> usize {
        self.acknowledged.lock().unwrap().len()
    }

    pub async fn stop(self) -> (Vec<Uuid>, usize) {
        self.stop.store(true, Ordering::Relaxed);
        for worker in self.workers {
            worker.await.unwrap();
        }
        let acknowledged = self.acknowledged.lock().unwrap().clone();
        let unavailable = *self.unavailable.lock().unwrap();
        (acknowledged, unavailable)
    }
}
