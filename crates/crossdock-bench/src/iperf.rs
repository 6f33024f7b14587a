//! iperf3's JSON report (`-J`), reduced to what the benchmark keeps.

use anyhow::{anyhow, bail, Result};
use serde::{Deserialize, Serialize};

/// One iperf3 TCP run, as the client reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IperfResult {
    /// Receiver-side throughput (what arrived), bits per second.
    pub received_bps: f64,
    pub sent_bps: f64,
    pub retransmits: u64,
    pub streams: usize,
    pub seconds: f64,
}

impl IperfResult {
    pub fn gbps(&self) -> f64 {
        self.received_bps / 1e9
    }
}

/// Parses `iperf3 -c ... -J` output; iperf3's own error message becomes the error.
pub fn parse(json: &str) -> Result<IperfResult> {
    let v: serde_json::Value = serde_json::from_str(json)
        .map_err(|e| anyhow!("iperf3 printed no JSON report ({e}): {}", first_line(json)))?;
    if let Some(err) = v.get("error").and_then(|e| e.as_str()) {
        bail!("iperf3: {err}");
    }
    let end = &v["end"];
    let received = end["sum_received"]["bits_per_second"]
        .as_f64()
        .ok_or_else(|| anyhow!("iperf3's report has no end.sum_received.bits_per_second"))?;
    Ok(IperfResult {
        received_bps: received,
        sent_bps: end["sum_sent"]["bits_per_second"]
            .as_f64()
            .unwrap_or(f64::NAN),
        retransmits: end["sum_sent"]["retransmits"].as_u64().unwrap_or(0),
        streams: end["streams"].as_array().map(Vec::len).unwrap_or(0),
        seconds: end["sum_received"]["seconds"].as_f64().unwrap_or(f64::NAN),
    })
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("").trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = r#"{"start":{"connected":[]},"intervals":[],
      "end":{"streams":[{"sender":{}},{"sender":{}}],
        "sum_sent":{"start":0,"end":3.0,"seconds":3.0,"bytes":3750000000,"bits_per_second":1.0e10,"retransmits":7,"sender":true},
        "sum_received":{"start":0,"end":3.0,"seconds":3.0,"bytes":3700000000,"bits_per_second":9.8e9,"sender":true}}}"#;

    #[test]
    fn the_receiver_side_figure_is_kept() {
        let r = parse(REPORT).unwrap();
        assert_eq!(r.received_bps, 9.8e9);
        assert_eq!(r.sent_bps, 1.0e10);
        assert_eq!(r.retransmits, 7);
        assert_eq!(r.streams, 2);
        assert_eq!(r.seconds, 3.0);
        assert!((r.gbps() - 9.8).abs() < 1e-9);
    }

    #[test]
    fn iperf3_errors_become_errors() {
        let e = parse(r#"{"start":{},"intervals":[],"end":{},"error":"unable to connect to server: Connection refused"}"#)
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "iperf3: unable to connect to server: Connection refused"
        );
        let e = parse("iperf3: error - something\n").unwrap_err();
        assert!(e.to_string().contains("iperf3: error - something"), "{e}");
        assert!(parse(r#"{"end":{}}"#).is_err());
    }
}
