//! Function names for code addresses, from the symbol tables of the
//! objects this process has loaded — the program itself and its shared
//! libraries — never from their debug info.
//!
//! The debug info of the `lab` binary is over a hundred megabytes; a
//! symboliser that reads it (as `backtrace`'s does, once per process)
//! costs each profiled service that much memory. A symbol table costs a
//! sorted list of each object's functions (12 bytes each, under half a
//! megabyte for `lab`), and the names stay in the file, which is mapped
//! read-only: its pages are the page cache's, shared by every process that
//! runs the same binary. What is lost is inlining: a function the compiler
//! inlined is named by the function it was inlined into, so the code a
//! profile must name (a fault's own function) is `#[inline(never)]`.
//!
//! The table is built the first time a name is asked for, on the thread
//! that asks (a profiler's, never a signal handler).

use std::collections::HashMap;
use std::ffi::CStr;
use std::sync::OnceLock;

use object::{Object, ObjectSymbol, SymbolKind};

/// One function of an object: where it starts and how long it is, as the
/// object's file addresses them, and where its NUL-terminated mangled name
/// starts in the mapped file. Twelve bytes, so the table of `lab`'s 37k
/// functions is under half a megabyte.
#[derive(Clone, Copy)]
struct Function {
    start: u32,
    size: u32,
    name: u32,
}

/// The functions of one loaded object, by start address.
struct Table {
    /// The mapped file, which holds the names.
    data: &'static [u8],
    /// Added to a file address, gives the address this process runs it at.
    bias: usize,
    /// The lowest address of its functions, in this process.
    low: usize,
    functions: Vec<Function>,
}

/// Every function of every loaded object: one table per object, by the
/// object's lowest address.
pub struct Symbols {
    tables: Vec<Table>,
}

static SYMBOLS: OnceLock<Symbols> = OnceLock::new();

/// The process's symbols, read on first use.
pub fn get() -> &'static Symbols {
    SYMBOLS.get_or_init(Symbols::load)
}

/// The demangled name (without its hash) of the function holding `address`,
/// or `None` when no symbol table covers it.
pub fn name(address: usize) -> Option<String> {
    get().name(address)
}

/// The name of a stack's frame at `ip`, from `cache` or the symbol table.
/// A return address points after its call, so one byte back is inside it;
/// the `leaf` frame's address is where the thread was, taken as it is. An
/// address no table covers is named by itself, as pprof shows it, rather
/// than left as a hole in the stack.
pub fn frame_name(ip: usize, leaf: bool, cache: &mut HashMap<usize, String>) -> String {
    cache
        .entry(ip)
        .or_insert_with(|| {
            let at = if leaf { ip } else { ip.saturating_sub(1) };
            name(at).unwrap_or_else(|| format!("{at:#x}"))
        })
        .clone()
}

impl Symbols {
    fn load() -> Symbols {
        let mut tables = Vec::new();
        for loaded in loaded_objects() {
            let Some(data) = map_file(&loaded.path) else {
                continue;
            };
            let Ok(file) = object::File::parse(data) else {
                continue;
            };
            let mut functions = Vec::new();
            // A stripped library keeps only its dynamic symbols.
            if file.symbol_table().is_some() {
                file.symbols()
                    .for_each(|symbol| add(&mut functions, data, symbol));
            } else {
                file.dynamic_symbols()
                    .for_each(|symbol| add(&mut functions, data, symbol));
            }
            release(data);
            functions.sort_by_key(|f| (f.start, std::cmp::Reverse(f.size)));
            functions.dedup_by_key(|f| f.start);
            functions.shrink_to_fit();
            let Some(first) = functions.first() else {
                continue;
            };
            tables.push(Table {
                data,
                bias: loaded.bias,
                low: loaded.bias.wrapping_add(first.start as usize),
                functions,
            });
        }
        tables.sort_by_key(|t| t.low);
        Symbols { tables }
    }

    /// How many functions the table knows.
    pub fn len(&self) -> usize {
        self.tables.iter().map(|t| t.functions.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }

    /// See [`name`].
    pub fn name(&self, address: usize) -> Option<String> {
        let at = self.tables.partition_point(|t| t.low <= address);
        let table = self.tables.get(at.checked_sub(1)?)?;
        let offset = u32::try_from(address.wrapping_sub(table.bias)).ok()?;
        let at = table.functions.partition_point(|f| f.start <= offset);
        let function = table.functions.get(at.checked_sub(1)?)?;
        // A symbol of unknown size covers up to the next one.
        if function.size > 0 && offset - function.start >= function.size {
            return None;
        }
        let name = table.data.get(function.name as usize..)?;
        let mangled = CStr::from_bytes_until_nul(name).ok()?.to_str().ok()?;
        Some(format!("{:#}", rustc_demangle::demangle(mangled)))
    }
}

/// Keeps `symbol` when it is a function with an address, and its name is
/// a NUL-terminated string of `data` (as a string table's names are).
fn add(functions: &mut Vec<Function>, data: &'static [u8], symbol: impl ObjectSymbol<'static>) {
    if symbol.kind() != SymbolKind::Text || symbol.address() == 0 {
        return;
    }
    let Ok(name) = symbol.name_bytes() else {
        return;
    };
    let name_at = (name.as_ptr() as usize).wrapping_sub(data.as_ptr() as usize);
    let terminated = data.get(name_at + name.len()) == Some(&0);
    let (Ok(start), Ok(size), Ok(name)) = (
        u32::try_from(symbol.address()),
        u32::try_from(symbol.size()),
        u32::try_from(name_at),
    ) else {
        return;
    };
    if terminated {
        functions.push(Function { start, size, name });
    }
}

/// A loaded object: its file and the difference between the addresses it
/// runs at and those its file names (zero for a non-PIE program).
struct Loaded {
    path: std::path::PathBuf,
    bias: usize,
}

fn loaded_objects() -> Vec<Loaded> {
    unsafe extern "C" fn each(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        found: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: the loader passes a valid entry, and `found` is the Vec
        // handed to dl_iterate_phdr below, on this thread.
        let (info, found) = unsafe { (&*info, &mut *(found as *mut Vec<Loaded>)) };
        let name = if info.dlpi_name.is_null() {
            ""
        } else {
            // SAFETY: a NUL-terminated path the loader owns.
            unsafe { CStr::from_ptr(info.dlpi_name) }
                .to_str()
                .unwrap_or("")
        };
        // The program itself comes first, with an empty name; the vDSO has
        // a name but no file.
        let path = if found.is_empty() && name.is_empty() {
            std::path::PathBuf::from("/proc/self/exe")
        } else if name.starts_with('/') {
            std::path::PathBuf::from(name)
        } else {
            return 0;
        };
        found.push(Loaded {
            path,
            bias: info.dlpi_addr as usize,
        });
        0
    }
    let mut found: Vec<Loaded> = Vec::new();
    // SAFETY: `each` only reads the entries and pushes to `found`.
    unsafe {
        libc::dl_iterate_phdr(
            Some(each),
            &mut found as *mut Vec<Loaded> as *mut libc::c_void,
        );
    }
    found
}

/// Lets the kernel take back the pages that reading the symbol tables
/// touched (a few MB of a program's `.symtab` and `.strtab`, otherwise
/// counted in the process's resident memory for good): the mapping stays,
/// and naming a frame later reads back only the page of its name.
fn release(data: &'static [u8]) {
    // SAFETY: advice on a read-only private mapping that is never written,
    // so dropped pages come back unchanged from the file when read.
    unsafe {
        libc::madvise(
            data.as_ptr() as *mut libc::c_void,
            data.len(),
            libc::MADV_DONTNEED,
        );
    }
}

/// The whole file, mapped read-only for the life of the process.
fn map_file(path: &std::path::Path) -> Option<&'static [u8]> {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open(path).ok()?;
    let len = usize::try_from(file.metadata().ok()?.len()).ok()?;
    if len == 0 {
        return None;
    }
    // SAFETY: a private read-only mapping of a file we opened; it is never
    // unmapped, so the slice lives as long as the process. (A binary
    // replaced on disk while it runs is a new file; the old one stays
    // mapped.)
    let at = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_PRIVATE,
            file.as_raw_fd(),
            0,
        )
    };
    if at == libc::MAP_FAILED {
        return None;
    }
    // SAFETY: `len` readable bytes at `at`, mapped above.
    Some(unsafe { std::slice::from_raw_parts(at as *const u8, len) })
}

#[cfg(test)]
mod tests {
    #[inline(never)]
    fn a_function_of_this_test() -> usize {
        std::hint::black_box(7)
    }

    #[test]
    fn names_a_function_of_the_program_and_of_libc() {
        let own = a_function_of_this_test as *const () as usize;
        let name = super::name(own + 1).expect("a name for our own function");
        assert!(
            name.ends_with("symbols::tests::a_function_of_this_test"),
            "{name}"
        );
        // SAFETY: dlsym with a NUL-terminated name.
        let libc = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"getpid".as_ptr()) } as usize;
        let name = super::name(libc).expect("a name for libc's getpid");
        assert!(name.contains("getpid"), "{name}");
        assert!(super::get().len() > 1000);
        assert_eq!(super::name(0), None);
    }
}
