//! The visitor's country from a MaxMind database (GeoLite2/GeoIP2 Country
//! or City, `.mmdb`), read once at start and searched in memory.

use std::net::IpAddr;
use std::path::Path;

pub struct GeoIp(maxminddb::Reader<Vec<u8>>);

impl GeoIp {
    pub fn open(path: &Path) -> Result<GeoIp, String> {
        maxminddb::Reader::open_readfile(path)
            .map(GeoIp)
            .map_err(|e| format!("{} is not a readable MaxMind database: {e}", path.display()))
    }

    /// The ISO country code of `ip`, lowercase.
    pub fn country(&self, ip: IpAddr) -> Option<String> {
        let record: maxminddb::geoip2::Country = self.0.lookup(ip).ok()??;
        Some(record.country?.iso_code?.to_ascii_lowercase())
    }
}

impl std::fmt::Debug for GeoIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GeoIp(..)")
    }
}
