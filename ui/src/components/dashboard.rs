//! The admin dashboard: refreshed every two seconds from `GET /admin/overview` without reloading
//! the page. Submissions per status, throughput over the last 15 minutes as a chart, the
//! validator group's members and the partitions each holds, queue depth per partition for the
//! validators and the projector, the latest dead letters with their reason and content, the
//! rebuild (start and progress), and the record browser.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use yew::prelude::*;

use super::record_browser::RecordBrowser;
use crate::api::{self, Endpoints};
use crate::model::clock_time;
use crate::operations::{DeadLetters, MinuteActivity, Overview, RebuildStatus};

/// How often the overview is asked for again.
const REFRESH: Duration = Duration::from_secs(2);

#[derive(Properties, PartialEq)]
pub struct DashboardProps {
    pub endpoints: Endpoints,
}

#[function_component(Dashboard)]
pub fn dashboard(props: &DashboardProps) -> Html {
    let overview = use_state(|| None::<Overview>);
    let error = use_state(|| None::<String>);
    let dead_letters = use_state(|| None::<DeadLetters>);

    // Ask again every REFRESH until the dashboard is closed; a failed look keeps the last
    // overview on screen and says why it is not current.
    {
        let (overview, error) = (overview.setter(), error.setter());
        use_effect_with(props.endpoints.clone(), move |endpoints| {
            let open = Rc::new(Cell::new(true));
            let (still_open, endpoints) = (open.clone(), endpoints.clone());
            wasm_bindgen_futures::spawn_local(async move {
                while still_open.get() {
                    match api::overview(&endpoints).await {
                        Ok(now) => {
                            overview.set(Some(now));
                            error.set(None);
                        }
                        Err(message) => error.set(Some(message)),
                    }
                    gloo_timers::future::sleep(REFRESH).await;
                }
            });
            move || open.set(false)
        });
    }
    // The latest dead letters, again whenever their count changes.
    {
        let count = overview.as_ref().map(|o| o.dead_letters);
        let (dead_letters, error, endpoints) = (dead_letters.setter(), error.setter(), props.endpoints.clone());
        use_effect_with(count, move |count| {
            if count.is_some() {
                wasm_bindgen_futures::spawn_local(async move {
                    match api::dead_letters(&endpoints).await {
                        Ok(letters) => dead_letters.set(Some(letters)),
                        Err(message) => error.set(Some(message)),
                    }
                });
            }
        });
    }

    let Some(now) = &*overview else {
        return html! {
            <section class="dashboard" aria-labelledby="dashboard-heading">
                <h2 id="dashboard-heading">{ "Operations" }</h2>
                if let Some(message) = &*error {
                    <p class="error" role="alert">{ message }</p>
                } else {
                    <p>{ "Loading…" }</p>
                }
            </section>
        };
    };
    html! {
        <section class="dashboard" aria-labelledby="dashboard-heading">
            <h2 id="dashboard-heading">{ "Operations" }</h2>
            <p class="observed" role="status">{ format!("Topic {}; as of {}", now.topic, clock_time(&now.observed_at)) }</p>
            if let Some(message) = &*error {
                <p class="error" role="alert">{ format!("Not current: {message}") }</p>
            }
            <div class="status-counts">
                { for ["PENDING", "PROCESSING", "PASSED", "FAILED"].into_iter().map(|status| html! {
                    <div class={classes!("status-count", status.to_lowercase())} data-status={status}>
                        <span class="count">{ now.submissions_by_status.get(status).copied().unwrap_or(0) }</span>
                        <span class="label">{ status }</span>
                    </div>
                }) }
            </div>
            <Throughput minutes={now.throughput.clone()} />
            <div class="ops-grid">
                <ValidatorGroupView overview={now.clone()} />
                <QueueDepth overview={now.clone()} />
            </div>
            <DeadLetterList topic={now.dead_letter_topic.clone()} count={now.dead_letters} letters={(*dead_letters).clone()} />
            <p class="parked-records">
                { format!("Notifications set aside: {}. ", now.parked_records) }
                <span class="hint">{ "Verdicts the notifier can never store (their account is gone); /admin/parked-records lists each with the reason." }</span>
            </p>
            <Rebuild endpoints={props.endpoints.clone()} status={now.rebuild.clone()} />
            <RecordBrowser endpoints={props.endpoints.clone()} partitions={now.partitions.len() as i32} />
        </section>
    }
}

#[derive(Properties, PartialEq)]
struct ThroughputProps {
    minutes: Vec<MinuteActivity>,
}

/// Width and height of the chart's drawing, in its own units.
const CHART: (f64, f64) = (600.0, 150.0);

/// Accepted and judged per minute as two lines, with the scale and the time span as text.
#[function_component(Throughput)]
fn throughput(props: &ThroughputProps) -> Html {
    let accepted: Vec<i64> = props.minutes.iter().map(|m| m.accepted).collect();
    let judged: Vec<i64> = props.minutes.iter().map(|m| m.passed + m.failed).collect();
    let top = accepted.iter().chain(&judged).copied().max().unwrap_or(0).max(1);
    let minute = |m: Option<&MinuteActivity>| m.map(|m| clock_time(&m.minute)).unwrap_or_default();
    let (total_accepted, total_judged): (i64, i64) = (accepted.iter().sum(), judged.iter().sum());
    let summary = format!("Last {} minutes: {total_accepted} accepted, {total_judged} judged", props.minutes.len());
    html! {
        <figure class="throughput">
            <figcaption>{ "Throughput per minute, last 15 minutes" }</figcaption>
            <svg viewBox={format!("0 0 {} {}", CHART.0, CHART.1)} role="img" aria-label={summary.clone()} preserveAspectRatio="none">
                <line class="axis" x1="0" y1={CHART.1.to_string()} x2={CHART.0.to_string()} y2={CHART.1.to_string()} />
                <polyline class="accepted" points={polyline(&accepted, top)} />
                <polyline class="judged" points={polyline(&judged, top)} />
            </svg>
            <p class="chart-scale">
                <span>{ minute(props.minutes.first()) }</span>
                <span>{ format!("top: {top} per minute") }</span>
                <span>{ minute(props.minutes.last()) }</span>
            </p>
            <p class="legend">
                <span class="accepted">{ "— accepted" }</span>
                <span class="judged">{ "— judged (passed + failed)" }</span>
                <span class="totals">{ summary }</span>
            </p>
        </figure>
    }
}

/// SVG polyline points for `values` spread over the chart's width, `top` at its top.
pub fn polyline(values: &[i64], top: i64) -> String {
    let step = CHART.0 / (values.len().max(2) - 1) as f64;
    values
        .iter()
        .enumerate()
        .map(|(i, &v)| format!("{:.1},{:.1}", i as f64 * step, CHART.1 - CHART.1 * v as f64 / top as f64))
        .collect::<Vec<_>>()
        .join(" ")
}

#[derive(Properties, PartialEq)]
struct OverviewProps {
    overview: Overview,
}

#[function_component(ValidatorGroupView)]
fn validator_group_view(props: &OverviewProps) -> Html {
    let group = &props.overview.validator_group;
    html! {
        <section class="validator-group" aria-labelledby="group-heading">
            <h3 id="group-heading">{ "Validators" }</h3>
            <p>{ format!("Group {}: {}, {} member(s)", group.group_id, group.state, group.members.len()) }</p>
            <table>
                <thead><tr><th>{ "Member" }</th><th>{ "Host" }</th><th>{ "Partitions" }</th></tr></thead>
                <tbody>
                    { for group.members.iter().map(|member| html! {
                        <tr class="member" title={format!("client id {}", member.client_id)}>
                            <td class="member-id">{ &member.member_id }</td>
                            <td>{ &member.host }</td>
                            <td class="partitions">{ member.partitions.iter().map(i32::to_string).collect::<Vec<_>>().join(", ") }</td>
                        </tr>
                    }) }
                </tbody>
            </table>
        </section>
    }
}

#[function_component(QueueDepth)]
fn queue_depth(props: &OverviewProps) -> Html {
    let partitions = &props.overview.partitions;
    let offset = |o: Option<i64>| o.map(|o| o.to_string()).unwrap_or_else(|| "—".into());
    html! {
        <section class="queue-depth" aria-labelledby="depth-heading">
            <h3 id="depth-heading">{ "Queue depth per partition" }</h3>
            <table>
                <thead><tr><th>{ "Partition" }</th><th>{ "End" }</th><th>{ "Validators at" }</th><th>{ "Behind" }</th><th>{ "Projector at" }</th><th>{ "Behind" }</th></tr></thead>
                <tbody>
                    { for partitions.iter().map(|p| html! {
                        <tr class="partition" data-partition={p.partition.to_string()}>
                            <td>{ p.partition }</td>
                            <td>{ p.end_offset }</td>
                            <td>{ offset(p.validator_offset) }</td>
                            <td class="validator-depth">{ p.validator_depth }</td>
                            <td>{ offset(p.projector_offset) }</td>
                            <td class="projector-depth">{ p.projector_depth }</td>
                        </tr>
                    }) }
                </tbody>
                <tfoot>
                    <tr>
                        <th>{ "All" }</th>
                        <td>{ partitions.iter().map(|p| p.end_offset).sum::<i64>() }</td>
                        <td></td>
                        <td class="validator-depth">{ partitions.iter().map(|p| p.validator_depth).sum::<i64>() }</td>
                        <td></td>
                        <td class="projector-depth">{ partitions.iter().map(|p| p.projector_depth).sum::<i64>() }</td>
                    </tr>
                </tfoot>
            </table>
        </section>
    }
}

#[derive(Properties, PartialEq)]
struct DeadLetterProps {
    topic: String,
    count: i64,
    letters: Option<DeadLetters>,
}

#[function_component(DeadLetterList)]
fn dead_letter_list(props: &DeadLetterProps) -> Html {
    let latest = props.letters.as_ref().map(|l| l.latest.clone()).unwrap_or_default();
    html! {
        <section class="dead-letters" aria-labelledby="dead-heading">
            <h3 id="dead-heading">{ format!("Dead letters: {}", props.count) }</h3>
            <p class="hint">{ format!("Records the projector could not use, parked on {}.", props.topic) }</p>
            if !latest.is_empty() {
                <ol class="dead-letter-list">
                    { for latest.iter().map(|letter| html! {
                        <li class="dead-letter">
                            <p>
                                <time>{ letter.timestamp.as_deref().map(clock_time).unwrap_or_default() }</time>
                                { format!(" from {}:{} ", letter.source_partition.map(|p| p.to_string()).unwrap_or_default(), letter.source_offset.map(|o| o.to_string()).unwrap_or_default()) }
                                <span class="reason">{ letter.reason.clone().unwrap_or_else(|| "no reason recorded".into()) }</span>
                            </p>
                            <pre class="record-text">{ letter.content.clone().unwrap_or_else(|| "(no value)".into()) }</pre>
                        </li>
                    }) }
                </ol>
            }
        </section>
    }
}

#[derive(Properties, PartialEq)]
struct RebuildProps {
    endpoints: Endpoints,
    status: RebuildStatus,
}

/// The rebuild's state and progress, and starting one (a second click confirms).
#[function_component(Rebuild)]
fn rebuild(props: &RebuildProps) -> Html {
    let confirming = use_state(|| false);
    let error = use_state(|| None::<String>);
    let status = &props.status;
    let ask = {
        let confirming = confirming.clone();
        Callback::from(move |_: MouseEvent| confirming.set(!*confirming))
    };
    let start = {
        let (confirming, error, endpoints) = (confirming.clone(), error.clone(), props.endpoints.clone());
        Callback::from(move |_: MouseEvent| {
            let (confirming, error, endpoints) = (confirming.clone(), error.clone(), endpoints.clone());
            wasm_bindgen_futures::spawn_local(async move {
                // The next overview shows it running.
                error.set(api::start_rebuild(&endpoints).await.err());
                confirming.set(false);
            });
        })
    };
    let generations = match (status.from_generation, status.to_generation) {
        (Some(from), Some(to)) => format!(", generation {from} to {to}"),
        _ => String::new(),
    };
    html! {
        <section class="rebuild" aria-labelledby="rebuild-heading" data-state={status.state.clone()}>
            <h3 id="rebuild-heading">{ "Rebuild of the read model" }</h3>
            <p class="rebuild-state">{ format!("{}{generations}", status.state) }</p>
            if status.state != "idle" {
                <p>
                    { format!("{} events applied", status.events_applied) }
                    if let Some(percent) = status.percent_read() {
                        { format!("; {percent}% of the topic read ") }
                        <progress max="100" value={percent.to_string()}>{ format!("{percent}%") }</progress>
                    }
                </p>
                <p class="hint">
                    { status.started_at.as_deref().map(|t| format!("Started {}", clock_time(t))).unwrap_or_default() }
                    { status.finished_at.as_deref().map(|t| format!(", finished {}", clock_time(t))).unwrap_or_default() }
                </p>
            }
            if let Some(problem) = &status.error {
                <p class="error">{ problem }</p>
            }
            if let Some(message) = &*error {
                <p class="error" role="alert">{ message }</p>
            }
            if status.state != "running" {
                if *confirming {
                    <p>{ "Rebuild the read model from the whole topic? Reads keep being served meanwhile." }</p>
                    <button type="button" class="confirm-rebuild" onclick={start}>{ "Rebuild now" }</button>
                    <button type="button" onclick={ask}>{ "Cancel" }</button>
                } else {
                    <button type="button" class="start-rebuild" onclick={ask}>{ "Start a rebuild" }</button>
                }
            }
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chart_spans_its_width_with_the_top_value_at_its_top() {
        assert_eq!(polyline(&[0, 5, 10], 10), "0.0,150.0 300.0,75.0 600.0,0.0");
        assert_eq!(polyline(&[3], 3), "0.0,0.0");
    }
}
