//! Function names for fatal-signal frames. A signal handler cannot read debug info (that
//! allocates and locks), so the executable's symbol table is read once, on a background thread
//! started at install, into a sorted table the handler only searches.

use std::path::PathBuf;
use std::sync::OnceLock;

/// Functions of the executable: address ranges (ELF virtual addresses, which are the offsets the
/// trace prints) and their demangled names, sorted by address.
struct SymbolTable {
    functions: Vec<Function>,
    names: String,
}

struct Function {
    start: u64,
    end: u64,
    name_start: usize,
    name_end: usize,
}

static TABLE: OnceLock<SymbolTable> = OnceLock::new();

/// Reads the symbol table of `executable` on a thread of its own, so install stays quick.
pub(crate) fn load_in_background(executable: PathBuf) {
    let _ = std::thread::Builder::new()
        .name("crashguard-symbols".into())
        .spawn(move || {
            if let Some(table) = read(&executable) {
                let _ = TABLE.set(table);
            }
        });
}

/// The function containing `offset` in the executable, once the table is loaded. Takes no lock
/// and allocates nothing: safe in a signal handler.
pub(crate) fn function_at(offset: u64) -> Option<&'static str> {
    let (table, function) = function_containing(offset)?;
    Some(&table.names[function.name_start..function.name_end])
}

/// Where the function containing `offset` starts, once the table is loaded. As
/// [`function_at`], safe in a signal handler.
pub(crate) fn function_start(offset: u64) -> Option<u64> {
    function_containing(offset).map(|(_, function)| function.start)
}

fn function_containing(offset: u64) -> Option<(&'static SymbolTable, &'static Function)> {
    let table = TABLE.get()?;
    let index = table
        .functions
        .partition_point(|function| function.start <= offset)
        .checked_sub(1)?;
    let function = &table.functions[index];
    (offset < function.end).then_some((table, function))
}

/// Whether the symbol table has been read (it is read once, shortly after install).
#[cfg_attr(not(feature = "test-hooks"), allow(dead_code))]
pub(crate) fn ready() -> bool {
    TABLE.get().is_some()
}

fn read(executable: &std::path::Path) -> Option<SymbolTable> {
    let file = std::fs::File::open(executable).ok()?;
    let mapped = MappedFile::new(&file)?;
    table_from(mapped.bytes())
}

/// A read-only mapping of a whole file: only the pages of the symbol table get read, not a
/// binary's debug info, which can be hundreds of megabytes.
struct MappedFile {
    address: *mut libc::c_void,
    length: usize,
}

impl MappedFile {
    fn new(file: &std::fs::File) -> Option<MappedFile> {
        use std::os::fd::AsRawFd;
        let length = usize::try_from(file.metadata().ok()?.len()).ok()?;
        if length == 0 {
            return None;
        }
        // SAFETY: a private read-only mapping of an open file; the result is checked. The
        // executable is not written while it runs (the kernel refuses with ETXTBSY).
        let address = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                length,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        (address != libc::MAP_FAILED).then_some(MappedFile { address, length })
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: the mapping is `length` readable bytes and lives as long as `self`.
        unsafe { std::slice::from_raw_parts(self.address.cast(), self.length) }
    }
}

impl Drop for MappedFile {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the mapping made in `new`, after its last use.
        unsafe { libc::munmap(self.address, self.length) };
    }
}

fn table_from(data: &[u8]) -> Option<SymbolTable> {
    use object::{Object, ObjectSymbol, SymbolKind};
    let file = object::File::parse(data).ok()?;
    let mut symbols: Vec<(u64, u64, &str)> = file
        .symbols()
        .filter(|symbol| symbol.kind() == SymbolKind::Text && symbol.size() > 0)
        .filter_map(|symbol| Some((symbol.address(), symbol.size(), symbol.name().ok()?)))
        .collect();
    symbols.sort_unstable_by_key(|&(address, _, _)| address);
    symbols.dedup_by_key(|&mut (address, _, _)| address);
    let mut table = SymbolTable {
        functions: Vec::with_capacity(symbols.len()),
        names: String::new(),
    };
    for (address, size, name) in symbols {
        let name_start = table.names.len();
        use std::fmt::Write as _;
        let _ = write!(table.names, "{:#}", rustc_demangle::demangle(name));
        table.functions.push(Function {
            start: address,
            end: address + size,
            name_start,
            name_end: table.names.len(),
        });
    }
    Some(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_function_of_this_binary_is_found_by_its_offset() {
        let executable = std::env::current_exe().unwrap();
        let table = read(&executable).expect("the test binary has a symbol table");
        let found = table.functions.iter().any(|function| {
            table.names[function.name_start..function.name_end]
                .ends_with("a_function_of_this_binary_is_found_by_its_offset")
        });
        assert!(found);
        assert!(table
            .functions
            .windows(2)
            .all(|pair| pair[0].start < pair[1].start));
    }
}
