//! Cron schedules (UTC), as Vercel and Netlify take them: five fields —
//! minute, hour, day of month, month, day of week — each `*`, a number, a
//! range `a-b`, a list `a,b` or a step `*/n`/`a-b/n`. Netlify also takes
//! `@hourly`, `@daily`, `@weekly`, `@monthly` and `@yearly`.

/// Whose rules a schedule follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// Numbers only (`MON` is refused).
    Vercel,
    /// Vercel's, plus the `@` shorthands but `@reboot` and `@annually`.
    Netlify,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    minutes: u64,
    hours: u32,
    days: u32,
    months: u16,
    weekdays: u8,
    /// Whether day of month and day of week were both restricted (then
    /// either may match, as cron has it).
    either_day: bool,
}

const FIELDS: [(&str, u32, u32); 5] =
    [("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 7)];

impl Schedule {
    pub fn parse(text: &str, dialect: Dialect) -> Result<Schedule, String> {
        let text = text.trim();
        if text.len() > 256 {
            return Err("a schedule is at most 256 characters".into());
        }
        let expanded = match text {
            "@hourly" => "0 * * * *",
            "@daily" | "@midnight" => "0 0 * * *",
            "@weekly" => "0 0 * * 0",
            "@monthly" => "0 0 1 * *",
            "@yearly" => "0 0 1 1 *",
            t if t.starts_with('@') => {
                return Err(match dialect {
                    Dialect::Netlify => {
                        format!("{t} is not supported (use @hourly, @daily, @weekly, @monthly, @yearly or five fields)")
                    }
                    Dialect::Vercel => format!("{t}: a schedule has exactly 5 fields"),
                });
            }
            t => t,
        };
        if dialect == Dialect::Vercel && text.starts_with('@') {
            return Err(format!("{text}: a schedule has exactly 5 fields"));
        }
        let parts: Vec<&str> = expanded.split_whitespace().collect();
        if parts.len() != 5 {
            return Err(format!(
                "{text:?}: a schedule has exactly 5 fields (minute hour day-of-month month day-of-week), found {}",
                parts.len()
            ));
        }
        let mut bits = [0u64; 5];
        for (i, (part, (name, lo, hi))) in parts.iter().zip(FIELDS).enumerate() {
            bits[i] = field(part, lo, hi).map_err(|e| format!("{name}: {e}"))?;
        }
        // Sunday is 0 and 7.
        let weekdays = (bits[4] | (bits[4] >> 7)) as u8 & 0x7f;
        Ok(Schedule {
            minutes: bits[0],
            hours: bits[1] as u32,
            days: bits[2] as u32,
            months: bits[3] as u16,
            weekdays,
            either_day: parts[2] != "*" && parts[4] != "*",
        })
    }

    /// Whether the schedule fires in the minute that starts at `unix_ms`.
    pub fn matches(&self, unix_ms: i64) -> bool {
        let t = Civil::of(unix_ms);
        let day = self.days & (1 << t.day) != 0;
        let weekday = self.weekdays & (1 << t.weekday) != 0;
        let day_ok = if self.either_day { day || weekday } else { day && weekday };
        self.minutes & (1 << t.minute) != 0
            && self.hours & (1 << t.hour) != 0
            && self.months & (1 << t.month) != 0
            && day_ok
    }

    /// The first minute after `unix_ms` it fires in (within eight years).
    pub fn next_after(&self, unix_ms: i64) -> Option<i64> {
        let mut t = (unix_ms.div_euclid(60_000) + 1) * 60_000;
        let end = t + 8 * 366 * 86_400_000;
        while t < end {
            let c = Civil::of(t);
            if self.months & (1 << c.month) == 0 || !self.day_matches(&c) {
                // The next day.
                t = (t.div_euclid(86_400_000) + 1) * 86_400_000;
                continue;
            }
            if self.hours & (1 << c.hour) == 0 {
                t = (t.div_euclid(3_600_000) + 1) * 3_600_000;
                continue;
            }
            if self.minutes & (1 << c.minute) != 0 {
                return Some(t);
            }
            t += 60_000;
        }
        None
    }

    fn day_matches(&self, c: &Civil) -> bool {
        let day = self.days & (1 << c.day) != 0;
        let weekday = self.weekdays & (1 << c.weekday) != 0;
        if self.either_day { day || weekday } else { day && weekday }
    }
}

fn field(text: &str, lo: u32, hi: u32) -> Result<u64, String> {
    let mut bits = 0u64;
    for item in text.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (r, number(s, 1, hi.max(1))?),
            None => (item, 1),
        };
        let (a, b) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            let (a, b) = (number(a, lo, hi)?, number(b, lo, hi)?);
            if a > b {
                return Err(format!("range {range:?} runs backwards"));
            }
            (a, b)
        } else {
            let a = number(range, lo, hi)?;
            (a, if item.contains('/') { hi } else { a })
        };
        let mut v = a;
        while v <= b {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok(bits)
}

fn number(text: &str, lo: u32, hi: u32) -> Result<u32, String> {
    match text.parse::<u32>() {
        Ok(n) if (lo..=hi).contains(&n) => Ok(n),
        Ok(n) => Err(format!("{n} is out of range {lo}-{hi}")),
        Err(_) => Err(format!("Invalid value {text:?}")),
    }
}

/// A UTC time broken down.
struct Civil {
    minute: u32,
    hour: u32,
    day: u32,
    month: u32,
    /// 0 = Sunday.
    weekday: u32,
}

impl Civil {
    fn of(unix_ms: i64) -> Civil {
        let secs = unix_ms.div_euclid(1000);
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let (_, month, day) = civil_from_days(days);
        Civil {
            minute: ((rem / 60) % 60) as u32,
            hour: (rem / 3600) as u32,
            day,
            month,
            weekday: (days + 4).rem_euclid(7) as u32,
        }
    }
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian
/// (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `unix_ms` as RFC 3339 UTC (`2026-12-02T08:00:00Z`).
pub fn rfc3339(unix_ms: i64) -> String {
    let secs = unix_ms.div_euclid(1000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, (rem / 60) % 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-12-02T08:00:00Z, a Wednesday.
    const T: i64 = 1_796_198_400_000;

    #[test]
    fn dates_and_weekdays() {
        assert_eq!(rfc3339(T), "2026-12-02T08:00:00Z");
        assert_eq!(Civil::of(T).weekday, 3);
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn next_runs() {
        let s = Schedule::parse("0 8 * * *", Dialect::Vercel).unwrap();
        assert!(s.matches(T));
        assert_eq!(s.next_after(T).map(rfc3339).as_deref(), Some("2026-12-03T08:00:00Z"));
        let every5 = Schedule::parse("*/5 * * * *", Dialect::Vercel).unwrap();
        assert_eq!(every5.next_after(T + 1).map(rfc3339).as_deref(), Some("2026-12-02T08:05:00Z"));
        let mondays = Schedule::parse("30 9 * * 1", Dialect::Vercel).unwrap();
        assert_eq!(mondays.next_after(T).map(rfc3339).as_deref(), Some("2026-12-07T09:30:00Z"));
        let sunday7 = Schedule::parse("0 0 * * 7", Dialect::Vercel).unwrap();
        assert_eq!(sunday7.next_after(T).map(rfc3339).as_deref(), Some("2026-12-06T00:00:00Z"));
        let daily = Schedule::parse("@daily", Dialect::Netlify).unwrap();
        assert_eq!(daily.next_after(T).map(rfc3339).as_deref(), Some("2026-12-03T00:00:00Z"));
        let feb29 = Schedule::parse("0 0 29 2 *", Dialect::Vercel).unwrap();
        assert_eq!(feb29.next_after(T).map(rfc3339).as_deref(), Some("2028-02-29T00:00:00Z"));
    }

    #[test]
    fn bad_schedules_say_why() {
        let err = |s: &str, d| Schedule::parse(s, d).unwrap_err();
        assert!(err("0 8 * * MON", Dialect::Vercel).contains("Invalid value \"MON\""));
        assert!(err("*/5 * * *", Dialect::Vercel).contains("exactly 5 fields"));
        assert!(err("@reboot", Dialect::Netlify).contains("@reboot"));
        assert!(err("@annually", Dialect::Netlify).contains("@annually"));
        assert!(err("@daily", Dialect::Vercel).contains("exactly 5 fields"));
        assert!(err("60 * * * *", Dialect::Vercel).contains("out of range"));
        assert!(err("5-1 * * * *", Dialect::Vercel).contains("backwards"));
    }
}
