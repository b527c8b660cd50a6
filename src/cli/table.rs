//! The `kanto-cm list` table, byte for byte as Kanto prints it: Go's `text/tabwriter` with
//! minwidth 8, tabwidth 8, padding 0, tab padding and the Debug flag (`|` between columns),
//! over rows formatted with `%-37s\t%-37s\t%-60s\t%-10s\t%-32s\t%-10s\t`. Leda's `sdv-health`
//! parses it with `awk -F'|'`. (Pure.)

use crate::model::Container;

const WIDTHS: [usize; 6] = [37, 37, 60, 10, 32, 10];
const MIN_WIDTH: usize = 8;
const TAB_WIDTH: usize = 8;

fn pad(text: &str, width: usize) -> String {
    let n = text.chars().count();
    if n >= width {
        text.to_string()
    } else {
        format!("{text}{}", " ".repeat(width - n))
    }
}

/// The table for `containers`, including Kanto's leading and trailing empty lines.
pub fn render(containers: &[Container]) -> String {
    let mut rows: Vec<[String; 6]> = Vec::new();
    rows.push(["ID", "Name", "Image", "Status", "Finished At", "Exit Code"].map(String::from));
    rows.push(
        [
            "-------------------------------------",
            "-------------------------------------",
            "------------------------------------------------------------",
            "----------",
            "------------------------------",
            "----------",
        ]
        .map(String::from),
    );
    for c in containers {
        rows.push([
            c.container_id.clone(),
            c.container_name.clone(),
            c.image.name.clone(),
            c.state.status.name().to_string(),
            c.state.finished_at.clone(),
            c.state.exit_code.to_string(),
        ]);
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().zip(WIDTHS).map(|(t, w)| pad(t, w)).collect())
        .collect();
    // Column widths: the widest cell, at least minwidth (padding 0).
    let widths: Vec<usize> = (0..WIDTHS.len())
        .map(|j| {
            cells
                .iter()
                .map(|r| r[j].chars().count())
                .max()
                .unwrap_or(0)
                .max(MIN_WIDTH)
        })
        .collect();
    let mut out = String::from("\n");
    for row in &cells {
        for (j, cell) in row.iter().enumerate() {
            if j > 0 {
                out.push('|');
            }
            out.push_str(cell);
            // Tab padding: to the next multiple of the tab width past the column width.
            let column = widths[j].div_ceil(TAB_WIDTH) * TAB_WIDTH;
            let gap = column - cell.chars().count();
            out.push_str(&"\t".repeat(gap.div_ceil(TAB_WIDTH)));
        }
        // The empty cell after the last tab still gets its column separator.
        out.push_str("|\n");
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::State;

    fn c(id: &str, name: &str, image: &str, state: State) -> Container {
        Container {
            container_id: id.into(),
            container_name: name.into(),
            image: crate::model::Image {
                name: image.into(),
                decrypt_config: None,
            },
            state,
            ..Default::default()
        }
    }

    /// tests/golden/list-table.txt is what Go's tabwriter printed for these rows with Kanto's
    /// settings (Kanto's `prettyPrint`, run with Go 1.26).
    #[test]
    fn matches_gos_tabwriter_byte_for_byte() {
        let running = State::default().running(1, "t");
        let mut exited = running.exited(2, false, "2024-05-01T10:00:00.123456789Z");
        exited.exit_code = 2;
        let table = render(&[
            c(
                "7f0f9a2e-3b1c-4d5e-9f00-112233445566",
                "databroker",
                "ghcr.io/eclipse/kuksa.val/databroker:0.4.1",
                running,
            ),
            c(
                "0a1b2c3d-0000-4000-8000-000000000001",
                "flaky",
                "registry.example.com/a/very/long/path/to/an/image/with/many/parts:1.2.3",
                exited,
            ),
        ]);
        assert_eq!(table, include_str!("../../tests/golden/list-table.txt"));
        // awk -F'|' 'NR>3 {print $2"|"$4}' as sdv-health does (it trims the cells).
        let rows: Vec<(String, String)> = table
            .split('\n')
            .skip(3)
            .filter(|l| !l.is_empty())
            .map(|l| {
                let f: Vec<&str> = l.split('|').collect();
                (f[1].trim().to_string(), f[3].trim().to_string())
            })
            .collect();
        assert_eq!(
            rows,
            vec![
                ("databroker".into(), "Running".into()),
                ("flaky".into(), "Exited".into())
            ]
        );
    }

    #[test]
    fn long_cells_widen_their_column_for_every_row() {
        let long = "registry.example.com/a/very/long/path/to/an/image/with/many/parts:1.2.3";
        let table = render(&[c("id", "n", long, State::default())]);
        let lines: Vec<&str> = table.lines().collect();
        // The image column is 71 characters wide, so tab stops fall at 72: the 60-wide
        // header cell gets two tabs, the 71-character cell one.
        let tabs = |line: &str| {
            let cell = line.split('|').nth(2).unwrap();
            cell.len() - cell.trim_end_matches('\t').len()
        };
        assert_eq!(tabs(lines[1]), 2);
        assert_eq!(tabs(lines[3]), 1);
        assert!(lines[3].contains(long));
    }
}
