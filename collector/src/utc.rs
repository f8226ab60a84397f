//! UTC calendar fields of a Unix time, without a calendar dependency: file names of rotated
//! outputs and the hive-style `dt=`/`hour=` partitions of objects both need them.

/// A moment in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Civil {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

impl Civil {
    /// The calendar fields of `secs` seconds after the Unix epoch.
    pub fn from_unix(secs: u64) -> Civil {
        let (days, rem) = (secs / 86_400, secs % 86_400);
        // Civil-from-days (Howard Hinnant's algorithm), valid for all dates after 1970.
        let z = days as i64 + 719_468;
        let era = z / 146_097;
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        Civil { year, month, day, hour: (rem / 3600) as u32, minute: (rem % 3600 / 60) as u32, second: (rem % 60) as u32 }
    }

    /// `YYYYmmddTHHMMSSZ`.
    pub fn compact(&self) -> String {
        format!("{:04}{:02}{:02}T{:02}{:02}{:02}Z", self.year, self.month, self.day, self.hour, self.minute, self.second)
    }

    /// `YYYY-mm-dd`.
    pub fn date(&self) -> String {
        format!("{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(Civil::from_unix(0).compact(), "19700101T000000Z");
        assert_eq!(Civil::from_unix(1_795_000_000).compact(), "20261118T110640Z");
        assert_eq!(Civil::from_unix(951_782_400).date(), "2000-02-29");
        assert_eq!(Civil::from_unix(1_795_000_000).hour, 11);
    }
}
