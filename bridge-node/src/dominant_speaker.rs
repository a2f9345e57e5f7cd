//! Who is speaking in a room, from the audio levels publishers put in their packets (RFC 6464's
//! `ssrc-audio-level` header extension: 0 is the loudest, 127 silence, in -dBov). The header
//! extension is in the clear under SRTP and end-to-end encryption alike, so the bridge decides
//! without decoding audio.
//!
//! Time is cut into [`BUCKET`]s; a publisher's bucket holds the loudest level it sent in it,
//! turned into an energy above [`SPEECH_FLOOR_DBOV`]. Over the last [`WINDOW_BUCKETS`] buckets
//! (half a second) a publisher is *speaking* when at least [`VOICED_BUCKETS_MIN`] of them carried
//! speech: a cough, a click or a door (a short burst) never is. Its score is the energy over the
//! window. The dominant speaker changes when a speaking challenger's score beats the current
//! speaker's by [`CHALLENGE_MARGIN`] for [`HOLD_BUCKETS`] buckets in a row: two people talking over
//! each other do not make it flap, and a new speaker is announced about half a second after they
//! start. When nobody speaks, the last speaker stays (as in every conferencing client's layout).
//!
//! Sans-IO: [`DominantSpeaker::record`] takes a level and `now`, and says when the speaker
//! changed. It allocates only for a publisher it has not heard before.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::{Duration, Instant};

/// The header extension publishers put their audio level in (RFC 6464).
pub const AUDIO_LEVEL_URI: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";

pub const BUCKET: Duration = Duration::from_millis(50);
pub const WINDOW_BUCKETS: usize = 10;
/// 300 ms of speech within the last 500 ms.
pub const VOICED_BUCKETS_MIN: usize = 6;
/// Levels quieter than -60 dBov are background, not speech.
pub const SPEECH_FLOOR_DBOV: u8 = 60;
/// A challenger needs a score this much above the current speaker's (5/4: 25 % more).
pub const CHALLENGE_MARGIN: (u32, u32) = (5, 4);
pub const HOLD_BUCKETS: u32 = 4;

/// One publisher's last [`WINDOW_BUCKETS`] bucket energies.
#[derive(Debug, Clone, Default)]
struct History {
    energies: [u8; WINDOW_BUCKETS],
    /// The bucket `energies` ends at (its last entry).
    last_bucket: u64,
}

impl History {
    /// Shifts the window forward to `bucket`; silence fills the buckets nothing arrived in.
    fn advance(&mut self, bucket: u64) {
        let steps = bucket.saturating_sub(self.last_bucket);
        if steps >= WINDOW_BUCKETS as u64 {
            self.energies = [0; WINDOW_BUCKETS];
        } else {
            let steps = steps as usize;
            self.energies.rotate_left(steps);
            self.energies[WINDOW_BUCKETS - steps..].fill(0);
        }
        self.last_bucket = self.last_bucket.max(bucket);
    }

    fn speaking(&self) -> bool {
        self.energies.iter().filter(|e| **e > 0).count() >= VOICED_BUCKETS_MIN
    }

    fn score(&self) -> u32 {
        self.energies.iter().map(|e| u32::from(*e)).sum()
    }
}

/// The energy of a level: how far above the speech floor it is.
fn energy(level_dbov: u8) -> u8 {
    SPEECH_FLOOR_DBOV.saturating_sub(level_dbov.min(127))
}

/// A room's dominant speaker; `K` names a publisher.
#[derive(Debug)]
pub struct DominantSpeaker<K> {
    epoch: Instant,
    publishers: HashMap<K, History>,
    current: Option<K>,
    /// The publisher beating the current speaker, and for how many buckets in a row.
    challenger: Option<(K, u32)>,
    /// The last bucket the speaker was decided in.
    decided_bucket: u64,
    /// Speakers before the current one, most recent first (at most [`RECENT_SPEAKERS_MAX`]): the
    /// order last-N and the bandwidth allocator follow after the dominant speaker.
    recent: VecDeque<K>,
}

/// Former speakers remembered.
pub const RECENT_SPEAKERS_MAX: usize = 8;

impl<K: Copy + Eq + Hash> DominantSpeaker<K> {
    pub fn new(now: Instant) -> Self {
        Self {
            epoch: now,
            publishers: HashMap::new(),
            current: None,
            challenger: None,
            decided_bucket: 0,
            recent: VecDeque::new(),
        }
    }

    pub fn current(&self) -> Option<K> {
        self.current
    }

    /// Speakers before the current one, most recent first.
    pub fn recent(&self) -> impl Iterator<Item = K> + '_ {
        self.recent.iter().copied()
    }

    fn take_over(&mut self, speaker: K) {
        if let Some(previous) = self.current.filter(|p| *p != speaker) {
            self.recent.retain(|k| *k != previous);
            self.recent.push_front(previous);
            self.recent.truncate(RECENT_SPEAKERS_MAX);
        }
        self.recent.retain(|k| *k != speaker);
        self.current = Some(speaker);
    }

    fn bucket(&self, now: Instant) -> u64 {
        (now.saturating_duration_since(self.epoch).as_millis() / BUCKET.as_millis()) as u64
    }

    /// `publisher` sent a packet with audio level `level_dbov` at `now`. Returns the new
    /// dominant speaker when this changed it.
    pub fn record(&mut self, now: Instant, publisher: K, level_dbov: u8) -> Option<K> {
        let bucket = self.bucket(now);
        // The first packet of a bucket closes the one before: decide on the window it ends, in
        // which every publisher had its whole bucket.
        let change = if bucket > self.decided_bucket {
            self.decided_bucket = bucket;
            self.decide(bucket - 1)
        } else {
            None
        };
        let history = self.publishers.entry(publisher).or_insert_with(|| History {
            last_bucket: bucket,
            ..History::default()
        });
        history.advance(bucket);
        let slot = &mut history.energies[WINDOW_BUCKETS - 1];
        *slot = (*slot).max(energy(level_dbov));
        change
    }

    /// Decides on the window ending with bucket `closed`.
    fn decide(&mut self, closed: u64) -> Option<K> {
        for history in self.publishers.values_mut() {
            history.advance(closed);
        }
        let best = self
            .publishers
            .iter()
            .filter(|(_, h)| h.speaking())
            .max_by_key(|(_, h)| h.score())
            .map(|(k, h)| (*k, h.score()))?;
        let Some(current) = self.current else {
            self.take_over(best.0);
            return self.current;
        };
        if best.0 == current {
            self.challenger = None;
            return None;
        }
        let current_score = self.publishers.get(&current).map_or(0, History::score);
        let (num, den) = CHALLENGE_MARGIN;
        if best.1 * den <= current_score * num {
            self.challenger = None;
            return None;
        }
        let held = match self.challenger {
            Some((who, held)) if who == best.0 => held + 1,
            _ => 1,
        };
        if held >= HOLD_BUCKETS {
            self.take_over(best.0);
            self.challenger = None;
            return self.current;
        }
        self.challenger = Some((best.0, held));
        None
    }

    /// `publisher` left (or stopped publishing audio): forgotten; if it was the speaker, the
    /// next one speaking takes over without a hold.
    pub fn remove(&mut self, publisher: K) {
        self.publishers.remove(&publisher);
        self.recent.retain(|k| *k != publisher);
        if self.current == Some(publisher) {
            self.current = None;
        }
        if self.challenger.is_some_and(|(who, _)| who == publisher) {
            self.challenger = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PACKET: Duration = Duration::from_millis(20);
    const LOUD: u8 = 20;
    const QUIET: u8 = 45;
    const SILENT: u8 = 127;

    /// Feeds 20 ms packets for `duration`, each publisher's level from `level(publisher, t)`;
    /// returns every change with the time it happened.
    fn run(
        detector: &mut DominantSpeaker<u8>,
        start: Instant,
        duration: Duration,
        publishers: &[u8],
        level: impl Fn(u8, Duration) -> u8,
    ) -> Vec<(Duration, u8)> {
        let mut changes = Vec::new();
        let mut t = Duration::ZERO;
        while t < duration {
            for p in publishers {
                if let Some(speaker) = detector.record(start + t, *p, level(*p, t)) {
                    changes.push((t, speaker));
                }
            }
            t += PACKET;
        }
        changes
    }

    #[test]
    fn the_loud_one_becomes_speaker_within_a_second() {
        let start = Instant::now();
        let mut detector = DominantSpeaker::new(start);
        // Everyone silent for a second, then 2 starts talking.
        let changes = run(
            &mut detector,
            start,
            Duration::from_secs(3),
            &[1, 2, 3],
            |p, t| {
                if p == 2 && t >= Duration::from_secs(1) {
                    LOUD
                } else {
                    SILENT
                }
            },
        );
        assert_eq!(changes.len(), 1, "{changes:?}");
        let (at, speaker) = changes[0];
        assert_eq!(speaker, 2);
        assert!(at - Duration::from_secs(1) < Duration::from_secs(1), "{at:?}");
        // Then 3 talks louder and 2 stops: 3 takes over within a second.
        let later = start + Duration::from_secs(3);
        let changes = run(
            &mut detector,
            later,
            Duration::from_secs(2),
            &[1, 2, 3],
            |p, _| {
                if p == 3 { LOUD } else { SILENT }
            },
        );
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!(changes[0].1, 3);
        assert!(changes[0].0 < Duration::from_secs(1), "{changes:?}");
    }

    #[test]
    fn short_noises_never_take_the_floor() {
        let start = Instant::now();
        let mut detector = DominantSpeaker::new(start);
        // 1 talks steadily; 2 makes a loud 150 ms noise every 700 ms; 3 coughs twice.
        let changes = run(
            &mut detector,
            start,
            Duration::from_secs(10),
            &[1, 2, 3],
            |p, t| {
                let ms = t.as_millis() as u64;
                match p {
                    1 => QUIET,
                    2 if ms % 700 < 150 => 0,
                    3 if (4_000..4_200).contains(&ms) || (6_000..6_100).contains(&ms) => 0,
                    _ => SILENT,
                }
            },
        );
        assert_eq!(
            changes.iter().map(|c| c.1).collect::<Vec<_>>(),
            [1],
            "{changes:?}"
        );
        // With 1 silent, the noises still do not make 2 or 3 the speaker (the bursts keep their
        // 550 ms of quiet across the two phases: two bursts closer than that are 300 ms of sound
        // in half a second, which is speech).
        let later = start + Duration::from_secs(10);
        let changes = run(
            &mut detector,
            later,
            Duration::from_secs(5),
            &[1, 2, 3],
            |p, t| {
                let ms = t.as_millis() as u64;
                if p == 2 && (ms + 350) % 700 < 150 {
                    0
                } else {
                    SILENT
                }
            },
        );
        assert!(changes.is_empty(), "{changes:?}");
        assert_eq!(detector.current(), Some(1), "the last speaker stays");
    }

    #[test]
    fn two_people_talking_over_each_other_do_not_flap() {
        let start = Instant::now();
        let mut detector = DominantSpeaker::new(start);
        // 1 and 2 talk at nearly the same level, alternating which is a little louder every
        // 300 ms: within the margin, the first speaker keeps the floor.
        let changes = run(&mut detector, start, Duration::from_secs(10), &[1, 2], |p, t| {
            let louder = (t.as_millis() / 300) % 2 == u128::from(p - 1);
            if louder { LOUD } else { LOUD + 2 }
        });
        assert_eq!(changes.len(), 1, "{changes:?}");
    }

    #[test]
    fn a_speaker_who_leaves_hands_over_at_once() {
        let start = Instant::now();
        let mut detector = DominantSpeaker::new(start);
        run(&mut detector, start, Duration::from_secs(2), &[1, 2], |p, _| {
            if p == 1 { LOUD } else { QUIET }
        });
        assert_eq!(detector.current(), Some(1));
        detector.remove(1);
        let later = start + Duration::from_secs(2);
        let changes = run(&mut detector, later, Duration::from_millis(200), &[2], |_, _| {
            QUIET
        });
        assert_eq!(changes.first().map(|c| c.1), Some(2), "{changes:?}");
        assert!(
            changes[0].0 <= BUCKET * 2,
            "no hold when the floor is free: {changes:?}"
        );
    }

    #[test]
    fn the_window_forgets_what_is_older_than_half_a_second() {
        let mut history = History {
            energies: [9; WINDOW_BUCKETS],
            last_bucket: 0,
        };
        history.advance(3);
        assert_eq!(history.energies[..7], [9; 7]);
        assert_eq!(history.energies[7..], [0; 3]);
        history.advance(100);
        assert_eq!(history.energies, [0; WINDOW_BUCKETS]);
        assert_eq!(energy(0), SPEECH_FLOOR_DBOV);
        assert_eq!(energy(SPEECH_FLOOR_DBOV), 0);
        assert_eq!(energy(255), 0);
    }

    /// Speakers take turns 1, 2, 3, then 1 again: the former ones are remembered most recent
    /// first, without the current one, and a departed one is forgotten.
    #[test]
    fn former_speakers_are_kept_most_recent_first() {
        let start = Instant::now();
        let mut detector = DominantSpeaker::new(start);
        let mut at = start;
        for turn in [1u8, 2, 3, 1] {
            run(&mut detector, at, Duration::from_secs(3), &[1, 2, 3], |p, _| {
                if p == turn { LOUD } else { SILENT }
            });
            at += Duration::from_secs(3);
            assert_eq!(detector.current(), Some(turn));
        }
        assert_eq!(detector.recent().collect::<Vec<_>>(), [3, 2]);
        detector.remove(3);
        assert_eq!(detector.recent().collect::<Vec<_>>(), [2]);
    }
}
