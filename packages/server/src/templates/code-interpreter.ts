// The code-interpreter-v1 template (E2B's name, what @e2b/code-interpreter creates by default), a
// build of Sandlot's own pipeline on `base`: Python 3 with Jupyter and the data stack from
// Debian's packages; JavaScript (ijavascript, as E2B's) and TypeScript (tslab) kernels, npm ci from a
// lockfile (zeromq's prebuilt binaries are in its npm package: nothing is compiled); a bash
// kernel and the e2b/chart and e2b/data display formats (template-files/code-interpreter/python).
// The execution server is not in the template: it comes with the agent on /opt/sandlot
// (packages/code-interpreter), so it always matches the daemon.
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import type { BuiltinTemplate } from './builtin.js'

export const CODE_INTERPRETER = 'code-interpreter-v1'

/** The template's own files, COPY'd to /opt/code-interpreter. */
export const CODE_INTERPRETER_FILES = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../template-files/code-interpreter')

/** Debian 12 packages: Jupyter and what data work expects. */
export const CODE_INTERPRETER_PACKAGES = [
  'python3-ipykernel', 'jupyter-server', 'python3-pexpect',
  'python3-numpy', 'python3-pandas', 'python3-matplotlib', 'python3-scipy', 'python3-seaborn', 'python3-sklearn',
  'python3-sympy', 'python3-openpyxl', 'python3-xlrd', 'python3-pil', 'python3-requests', 'python3-bs4', 'python3-tabulate',
]

/** The host's CA bundle: the npm step trusts what the host trusts (a TLS-inspecting proxy's CA included). */
const HOST_CA_BUNDLE = '/etc/ssl/certs/ca-certificates.crt'
const BUILD_CA = '/tmp/sandlot-build-ca/ca.crt'
const DIR = '/opt/code-interpreter'

export const codeInterpreterTemplate: BuiltinTemplate = {
  name: CODE_INTERPRETER,
  async spec(pack) {
    const jsKernel = await pack(path.join(CODE_INTERPRETER_FILES, 'js-kernel'))
    const files = await pack(CODE_INTERPRETER_FILES, ['js-kernel'])
    const ca = fs.existsSync(HOST_CA_BUNDLE) ? await pack(HOST_CA_BUNDLE) : undefined
    return {
      fromTemplate: 'base',
      cpuCount: 2,
      memoryMB: 2048,
      steps: [
        {
          type: 'RUN',
          args: [`apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends ${CODE_INTERPRETER_PACKAGES.join(' ')} && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb`, 'root'],
        },
        { type: 'COPY', args: ['.', `${DIR}/js-kernel`, 'root:root'], filesHash: jsKernel },
        ...(ca ? [{ type: 'COPY' as const, args: ['ca-certificates.crt', BUILD_CA, 'root:root'], filesHash: ca }] : []),
        {
          type: 'RUN',
          args: [`cd ${DIR}/js-kernel && ${ca ? `NODE_EXTRA_CA_CERTS=${BUILD_CA} ` : ''}npm ci --omit=dev --no-audit --no-fund --loglevel=error && rm -rf /root/.npm ${path.posix.dirname(BUILD_CA)}`, 'root'],
        },
        { type: 'COPY', args: ['.', DIR, 'root:root'], filesHash: files },
        {
          type: 'RUN',
          args: [
            [
              // The kernels where any jupyter finds them (the start command puts python3's, ours,
              // before Debian's with JUPYTER_PATH); the Python modules on every python3's path.
              'mkdir -p /usr/local/share/jupyter/kernels',
              `for k in javascript typescript bash; do ln -sfn ${DIR}/kernels/$k /usr/local/share/jupyter/kernels/; done`,
              `echo ${DIR}/python > /usr/lib/python3/dist-packages/sandlot-code-interpreter.pth`,
              // tslab type-checks against @types/node, looked for from the kernel's working directory up.
              `mkdir -p /node_modules/@types && ln -sfn ${DIR}/js-kernel/node_modules/@types/node /node_modules/@types/node`,
              `chmod 755 ${DIR}/start`,
            ].join(' && '),
            'root',
          ],
        },
        // matplotlib's font cache, made once here rather than at each sandbox's first chart.
        { type: 'RUN', args: ['python3 -c "import matplotlib.pyplot"', 'user'] },
        { type: 'WORKDIR', args: ['/home/user'] },
      ],
      startCmd: `${DIR}/start`,
      readyCmd: 'curl -fsS -o /dev/null http://127.0.0.1:49999/health',
    }
  },
}
