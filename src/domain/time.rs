//! Time as a value. The core never reads the clock: callers pass `now` in, so a batch
//! is decided the same way when it is replayed (TIGER_STYLE: deterministic core).

use chrono::{DateTime, Datelike, Duration, FixedOffset, NaiveDate, NaiveTime, Utc};

/// Milliseconds since the Unix epoch, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimestampMs(pub i64);

impl TimestampMs {
    pub fn now() -> TimestampMs {
        TimestampMs(Utc::now().timestamp_millis())
    }

    pub fn to_utc(self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.0).unwrap_or_default()
    }
}

/// The programme's calendar: local offset (Asia/Jakarta, +07:00, no DST) and the daily
/// cut-over after which a transaction belongs to the next business day.
#[derive(Debug, Clone, Copy)]
pub struct BusinessCalendar {
    offset: FixedOffset,
    /// Seconds after local midnight at which the day closes; the default 23:59:59 closes
    /// it at the end of the calendar day.
    cutover_s: i64,
}

impl BusinessCalendar {
    pub fn new(utc_offset_minutes: i32, cutover: &str) -> Option<BusinessCalendar> {
        let offset = FixedOffset::east_opt(utc_offset_minutes.checked_mul(60)?)?;
        let time = NaiveTime::parse_from_str(cutover, "%H:%M:%S").ok()?;
        let cutover_s = i64::from(chrono::Timelike::num_seconds_from_midnight(&time));
        Some(BusinessCalendar { offset, cutover_s })
    }

    /// The business day that `at` belongs to.
    pub fn business_date(&self, at: TimestampMs) -> NaiveDate {
        // A transaction after the cut-over second belongs to the next day.
        let shift = Duration::seconds(86_400 - (self.cutover_s + 1));
        (at.to_utc().with_timezone(&self.offset) + shift).date_naive()
    }

    /// Business date as the integer YYYYMMDD, the form the counters compare.
    pub fn business_day(&self, at: TimestampMs) -> u32 {
        let d = self.business_date(at);
        (d.year() as u32) * 10_000 + d.month() * 100 + d.day()
    }

    /// The UTC instants [start, end) of a business date, for settlement.
    pub fn day_bounds(&self, date: NaiveDate) -> (TimestampMs, TimestampMs) {
        let shift = Duration::seconds(86_400 - (self.cutover_s + 1));
        let local_start = date.and_time(NaiveTime::MIN) - shift;
        let start = local_start
            .and_local_timezone(self.offset)
            .single()
            .map(|t| t.timestamp_millis())
            .unwrap_or_default();
        (TimestampMs(start), TimestampMs(start + 86_400_000))
    }

    /// Local YYMM, for card expiry checks.
    pub fn year_month(&self, at: TimestampMs) -> u16 {
        let local = at.to_utc().with_timezone(&self.offset);
        ((local.year() % 100) as u16) * 100 + local.month() as u16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> TimestampMs {
        TimestampMs(DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis())
    }

    #[test]
    fn jakarta_day_starts_at_17_utc_with_the_default_cutover() {
        let cal = BusinessCalendar::new(420, "23:59:59").unwrap();
        assert_eq!(cal.business_day(at("2026-11-23T16:59:59Z")), 20261123);
        assert_eq!(cal.business_day(at("2026-11-23T17:00:00Z")), 20261124);
        let (start, end) = cal.day_bounds(NaiveDate::from_ymd_opt(2026, 11, 24).unwrap());
        assert_eq!(start, at("2026-11-23T17:00:00Z"));
        assert_eq!(end, at("2026-11-24T17:00:00Z"));
    }

    #[test]
    fn an_earlier_cutover_moves_late_evening_to_the_next_day() {
        let cal = BusinessCalendar::new(420, "21:59:59").unwrap();
        // 22:30 Jakarta on the 23rd is business day 24th.
        assert_eq!(cal.business_day(at("2026-11-23T15:30:00Z")), 20261124);
        assert_eq!(cal.business_day(at("2026-11-23T14:30:00Z")), 20261123);
    }
}
