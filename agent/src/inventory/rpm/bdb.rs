//! Package header blobs from rpm's Berkeley DB `Packages` file, read without libdb.
//!
//! RHEL 7 and 8, CentOS 7, Amazon Linux 2 and SLES 12 keep their packages there, and images
//! such as ubi8-micro keep the file but not the rpm tool. It is a Berkeley DB hash database:
//! a metadata page, then hash pages whose items alternate key (the package's 4-byte instance
//! number) and value (its header blob, nearly always on a chain of overflow pages). Only the
//! page layout is read; nothing is ever written.

use std::io::{Read, Seek, SeekFrom};

/// `DB_HASHMAGIC`, at offset 12 of the metadata page in the file's byte order.
const HASH_MAGIC: u32 = 0x0006_1561;
/// Generic page header size (`SIZEOF_PAGE`); hash and overflow pages put their data after it.
const PAGE_HEADER: usize = 26;
/// Page types (`db_page.h`).
const P_HASH_UNSORTED: u8 = 2;
const P_OVERFLOW: u8 = 7;
const P_HASHMETA: u8 = 8;
const P_HASH: u8 = 13;
/// Hash item types.
const H_KEYDATA: u8 = 1;
const H_OFFPAGE: u8 = 3;
/// rpm refuses larger headers; a longer chain is corrupt.
const MAX_VALUE: usize = 256 << 20;

/// Why the file could not be read as a whole.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BdbError {
    #[error("not a Berkeley DB hash database (magic {0:#x})")]
    NotHash(u32),
    #[error("page size {0} is not one Berkeley DB writes")]
    PageSize(u32),
    #[error("{pages} pages of {page_size} bytes do not fit in {len} bytes: truncated")]
    Truncated {
        pages: u64,
        page_size: u32,
        len: u64,
    },
    #[error("read failed: {0}")]
    Io(String),
}

/// Byte order of the file, told by where the magic number reads right.
#[derive(Clone, Copy)]
enum Order {
    Little,
    Big,
}

impl Order {
    fn u32(self, bytes: &[u8], at: usize) -> u32 {
        let b: [u8; 4] = bytes[at..at + 4].try_into().expect("four bytes");
        match self {
            Order::Little => u32::from_le_bytes(b),
            Order::Big => u32::from_be_bytes(b),
        }
    }

    fn u16(self, bytes: &[u8], at: usize) -> u16 {
        let b: [u8; 2] = bytes[at..at + 2].try_into().expect("two bytes");
        match self {
            Order::Little => u16::from_le_bytes(b),
            Order::Big => u16::from_be_bytes(b),
        }
    }
}

struct Pages<R> {
    file: R,
    order: Order,
    page_size: usize,
    count: u32,
}

impl<R: Read + Seek> Pages<R> {
    fn open(mut file: R) -> Result<Self, BdbError> {
        let io = |err: std::io::Error| BdbError::Io(err.to_string());
        let len = file.seek(SeekFrom::End(0)).map_err(io)?;
        let mut meta = [0u8; 72];
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        file.read_exact(&mut meta)
            .map_err(|_| BdbError::NotHash(0))?;
        let order = [Order::Little, Order::Big]
            .into_iter()
            .find(|o| o.u32(&meta, 12) == HASH_MAGIC && meta[25] == P_HASHMETA)
            .ok_or(BdbError::NotHash(Order::Little.u32(&meta, 12)))?;
        let page_size = order.u32(&meta, 20);
        if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
            return Err(BdbError::PageSize(page_size));
        }
        let pages = u64::from(order.u32(&meta, 32)) + 1;
        if pages * u64::from(page_size) > len {
            return Err(BdbError::Truncated {
                pages,
                page_size,
                len,
            });
        }
        Ok(Pages {
            file,
            order,
            page_size: page_size as usize,
            count: pages as u32,
        })
    }

    fn read(&mut self, pgno: u32, page: &mut Vec<u8>) -> Result<(), BdbError> {
        let io = |err: std::io::Error| BdbError::Io(err.to_string());
        page.resize(self.page_size, 0);
        self.file
            .seek(SeekFrom::Start(u64::from(pgno) * self.page_size as u64))
            .map_err(io)?;
        self.file.read_exact(page).map_err(io)
    }

    /// The bytes of an overflow chain starting at `pgno`, `total` long.
    fn overflow(&mut self, mut pgno: u32, total: usize) -> Result<Vec<u8>, String> {
        if total > MAX_VALUE {
            return Err(format!("value of {total} bytes is larger than rpm allows"));
        }
        let mut value = Vec::with_capacity(total);
        let mut page = Vec::new();
        let mut hops = 0u32;
        while value.len() < total {
            if pgno == 0 || pgno >= self.count || hops > self.count {
                return Err(format!("overflow chain breaks at page {pgno}"));
            }
            self.read(pgno, &mut page).map_err(|e| e.to_string())?;
            if page[25] != P_OVERFLOW {
                return Err(format!("page {pgno} is type {}, not overflow", page[25]));
            }
            // On overflow pages the free-area offset field holds the data length.
            let len = usize::from(self.order.u16(&page, 22));
            let data = page
                .get(PAGE_HEADER..PAGE_HEADER + len)
                .ok_or_else(|| format!("overflow page {pgno} claims {len} bytes"))?;
            value.extend_from_slice(data);
            pgno = self.order.u32(&page, 16);
            hops += 1;
        }
        value.truncate(total);
        Ok(value)
    }
}

/// One hash item's bytes, its type byte first; `None` when the index points outside the page.
fn item(page: &[u8], order: Order, index: usize) -> Option<&[u8]> {
    let slot = PAGE_HEADER + 2 * index;
    let start = usize::from(order.u16(page, slot));
    // Items are laid out from the end of the page backwards, in index order.
    let end = if index == 0 {
        page.len()
    } else {
        usize::from(order.u16(page, slot - 2))
    };
    page.get(start..end).filter(|i| !i.is_empty())
}

/// Calls `visit` with each package's instance number and header blob, in page order;
/// `skip` with the reason for each value that cannot be read. Fails only when the file as a
/// whole is not a readable hash database.
pub fn visit_blobs<R: Read + Seek>(
    file: R,
    mut visit: impl FnMut(i64, &[u8]),
    mut skip: impl FnMut(String),
) -> Result<(), BdbError> {
    let mut pages = Pages::open(file)?;
    let order = pages.order;
    let mut page = Vec::new();
    for pgno in 1..pages.count {
        pages.read(pgno, &mut page)?;
        if !matches!(page[25], P_HASH | P_HASH_UNSORTED) {
            continue;
        }
        let entries = usize::from(order.u16(&page, 20));
        if PAGE_HEADER + 2 * entries > page.len() {
            skip(format!("hash page {pgno} claims {entries} entries"));
            continue;
        }
        for pair in (0..entries / 2).map(|p| 2 * p) {
            let (Some(key), Some(value)) = (item(&page, order, pair), item(&page, order, pair + 1))
            else {
                skip(format!("hash page {pgno}: item {pair} is out of bounds"));
                continue;
            };
            let key = match key {
                [H_KEYDATA, k @ ..] if k.len() == 4 => i64::from(order.u32(k, 0)),
                _ => {
                    skip(format!(
                        "hash page {pgno}: key {pair} is not a package number"
                    ));
                    continue;
                }
            };
            // Key 0 holds rpm's instance counter, not a package.
            if key == 0 {
                continue;
            }
            match value {
                [H_KEYDATA, blob @ ..] => visit(key, blob),
                [H_OFFPAGE, rest @ ..] if rest.len() >= 11 => {
                    let (first, total) = (order.u32(rest, 3), order.u32(rest, 7) as usize);
                    match pages.overflow(first, total) {
                        Ok(blob) => visit(key, &blob),
                        Err(reason) => skip(format!("package {key}: {reason}")),
                    }
                }
                [kind, ..] => skip(format!("package {key}: value of item type {kind}")),
                [] => unreachable!("empty items are filtered out"),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn meta_page(order: Order, page_size: u32, last_pgno: u32) -> Vec<u8> {
        let mut page = vec![0u8; page_size as usize];
        let put = |page: &mut Vec<u8>, at: usize, v: u32| {
            let b = match order {
                Order::Little => v.to_le_bytes(),
                Order::Big => v.to_be_bytes(),
            };
            page[at..at + 4].copy_from_slice(&b);
        };
        put(&mut page, 12, HASH_MAGIC);
        put(&mut page, 20, page_size);
        put(&mut page, 32, last_pgno);
        page[25] = P_HASHMETA;
        page
    }

    #[test]
    fn files_that_are_not_hash_databases_are_refused() {
        let read = |bytes: Vec<u8>| visit_blobs(Cursor::new(bytes), |_, _| {}, |_| {});
        assert_eq!(read(b"short".to_vec()), Err(BdbError::NotHash(0)));
        assert!(matches!(read(vec![7u8; 4096]), Err(BdbError::NotHash(_))));
        assert_eq!(
            read(meta_page(Order::Big, 1000, 0)),
            Err(BdbError::PageSize(1000))
        );
        // The metadata says three pages; the file holds one.
        assert!(matches!(
            read(meta_page(Order::Little, 4096, 2)),
            Err(BdbError::Truncated { pages: 3, .. })
        ));
        // Either byte order; a database with no hash pages holds no package.
        for order in [Order::Little, Order::Big] {
            let mut seen = 0;
            visit_blobs(
                Cursor::new(meta_page(order, 512, 0)),
                |_, _| seen += 1,
                |_| {},
            )
            .unwrap();
            assert_eq!(seen, 0);
        }
    }
}
